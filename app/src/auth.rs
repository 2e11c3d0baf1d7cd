//! The bearer token that protects `POST /multivac/data`.
//!
//! It fails closed: a token that is set but empty (an empty Secret value, a
//! blank variable) is a start-up error, never "no authentication". A token
//! read from a file usually ends with a newline (`kubectl create secret
//! generic --from-file`), so surrounding whitespace is trimmed, at start and
//! from what clients send. Tokens are compared as SHA-256 digests, so the
//! comparison takes the same time whatever the lengths and contents.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A configured API token; only its digest is kept, so neither `Debug` nor a
/// core dump of the settings shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ApiToken([u8; 32]);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl ApiToken {
    /// The token from its configured value (clap's value parser): trimmed,
    /// and refused when nothing is left.
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        let token = value.trim();
        if token.is_empty() {
            return Err(format!(
                "the API token is empty{}; set a token, or unset {} to leave POST open",
                if value.is_empty() {
                    ""
                } else {
                    " (only whitespace)"
                },
                multivac_contract::env::API_TOKEN
            ));
        }
        Ok(ApiToken(digest(token)))
    }

    /// True when `presented` (surrounding whitespace ignored) is the token,
    /// in time independent of both.
    pub(crate) fn accepts(&self, presented: &str) -> bool {
        bool::from(digest(presented.trim()).ct_eq(&self.0))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_blank_tokens_are_refused_with_a_clear_message() {
        for value in ["", " ", "\n", " \t\r\n "] {
            let err = ApiToken::parse(value).unwrap_err();
            assert!(err.contains("empty"), "{value:?}: {err}");
            assert!(err.contains("MULTIVAC_API_TOKEN"), "{value:?}: {err}");
        }
    }

    #[test]
    fn a_trailing_newline_is_trimmed_and_only_the_token_is_accepted() {
        let token = ApiToken::parse("s3cret-token\n").unwrap();
        assert_eq!(token, ApiToken::parse("s3cret-token").unwrap());
        assert!(token.accepts("s3cret-token"));
        assert!(token.accepts(" s3cret-token "));
        for wrong in [
            "",
            "s3cret",
            "s3cret-token-and-more",
            "S3CRET-TOKEN",
            "s3cret token",
        ] {
            assert!(!token.accepts(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
    }
}
