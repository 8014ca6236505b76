//! Credentials out of what is shown: the one redaction of connection URLs, used by the
//! processor for its logs and errors and by the xtask for its messages.

/// `url` with the password of its user info (`scheme://user:password@host/…`) and the
/// value of a `password` query parameter replaced by `***`.
///
/// NB: a URL that does not parse may still hold a password, so none of it is shown.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "[a URL that does not parse]".to_owned();
    };
    if parsed.password().is_some() {
        // Fails only for URLs without a host, which have no password.
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    "***".into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=hunter2&x=1"),
            "postgres://db/x?user=a&password=***&x=1"
        );
        assert_eq!(redact_url("postgres://a:b@c@d/x"), "postgres://a:***@d/x");
    }

    #[test]
    fn a_url_that_does_not_parse_shows_nothing_of_itself() {
        let shown = redact_url("postgres://app:hunter2@[::1/x");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
