//! Concept extraction: what a datum teaches MultiVAC.

use std::collections::BTreeSet;

use unicode_segmentation::UnicodeSegmentation;

/// The distinct lowercase words of `text`, sorted.
///
/// Words come from Unicode word segmentation (UAX #29), so punctuation,
/// whitespace of every script and emoji never become concepts, and
/// "Entropy," and "entropy" are one concept.
pub(crate) fn concepts(text: &str) -> Vec<String> {
    text.unicode_words()
        .map(str::to_lowercase)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::concepts;

    #[test]
    fn distinct_lowercase_words() {
        assert_eq!(
            concepts("Entropy, entropy! ENTROPY? Light... and  light"),
            vec!["and", "entropy", "light"]
        );
    }

    #[test]
    fn unicode_words_and_no_punctuation() {
        assert_eq!(
            concepts("Ünïcode straße — 宇宙 the can't 42 ✨"),
            vec!["42", "can't", "straße", "the", "ünïcode", "宇", "宙"]
        );
    }

    #[test]
    fn nothing_to_learn_from_blanks_and_symbols() {
        assert!(concepts("  \t\n ... !!! ").is_empty());
    }
}
