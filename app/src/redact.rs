//! Keeps credentials out of logs.

/// `url` with the password of its user info replaced by `***`.
///
/// Works on any `scheme://user:password@host...` string, including MongoDB
/// URIs with several comma-separated hosts that URL parsers reject, so a
/// connection string can be logged to say where the process connects.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    // The authority ends at the first '/', '?' or '#'; user info ends at the
    // last '@' inside it (a password may itself contain '@' when unescaped).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None => userinfo.to_owned(),
    };
    format!("{}{}{}", &url[..rest_start], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn hides_passwords() {
        assert_eq!(
            redact_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("mongodb://multivac:p@ss@m1:27017,m2:27017/multivac?authSource=admin"),
            "mongodb://multivac:***@m1:27017,m2:27017/multivac?authSource=admin"
        );
    }

    #[test]
    fn leaves_urls_without_password_alone() {
        for url in [
            "redis://127.0.0.1:6379",
            "mongodb://user@host/db",
            "not a url",
            "redis://host/?q=a@b",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}
