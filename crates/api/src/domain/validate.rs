//! Checks of free text and identifiers, shared by the operations (and by signalling, through
//! `http::util`).

use super::error::{DomainError, DomainResult};

/// Printable, no control characters, 1 to `max` characters.
pub fn text(field: &str, v: &str, max: usize) -> DomainResult<()> {
    if v.is_empty() || v.chars().count() > max || v.chars().any(|c| c.is_control()) {
        return Err(DomainError::invalid(format!(
            "`{field}` must be 1 to {max} printable characters"
        )));
    }
    Ok(())
}

/// Identifiers (usernames, user ids): 1 to `max` letters, digits and `._@+-`.
pub fn ident(field: &str, v: &str, max: usize) -> DomainResult<()> {
    if v.is_empty()
        || v.len() > max
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
    {
        return Err(DomainError::invalid(format!(
            "`{field}` must be 1 to {max} characters of letters, digits and . _ @ + -"
        )));
    }
    Ok(())
}

/// At most 16 tags of 1 to 64 printable characters.
pub fn tags(tags: &[String]) -> DomainResult<()> {
    if tags.len() > 16 {
        return Err(DomainError::invalid("at most 16 `tags`"));
    }
    for t in tags {
        text("tags[]", t, 64)?;
    }
    Ok(())
}
