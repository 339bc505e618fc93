//! Password rules and hashing with Argon2id.
//!
//! Invariants: a stored hash is always a self-describing PHC string; a password that breaks
//! the rules ([`check`]) is never hashed or stored. Hashing and verifying are deliberately
//! slow (tens of milliseconds of CPU); call them off the async executor.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Argon2 accepts longer inputs, but nobody needs them and they only invite abuse.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// Why a password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRuleError {
    #[error("password must be at least {} characters", MIN_PASSWORD_CHARS)]
    TooShort,
    #[error("password must be at most {} characters", MAX_PASSWORD_CHARS)]
    TooLong,
    #[error("password must contain at least one character that is not whitespace")]
    Blank,
}

/// Whether a new password may be set: its length in characters, and not only whitespace.
pub fn check(password: &str) -> Result<(), PasswordRuleError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordRuleError::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordRuleError::TooLong);
    }
    if password.chars().all(char::is_whitespace) {
        return Err(PasswordRuleError::Blank);
    }
    Ok(())
}

/// Hashes a password into a self-describing PHC string (`$argon2id$v=19$...`), so the
/// parameters can be raised later without breaking stored hashes.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches a stored PHC string. An unparsable stored hash counts as a
/// mismatch: the user cannot log in, but nothing else breaks.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password_and_is_salted() {
        let h1 = hash("correct horse").unwrap();
        let h2 = hash("correct horse").unwrap();
        assert!(h1.starts_with("$argon2id$"), "{h1}");
        assert_ne!(h1, h2, "same password must get different salts");
        assert!(verify("correct horse", &h1));
        assert!(!verify("wrong horse", &h1));
        assert!(!verify("correct horse", "not a phc string"));
    }

    #[test]
    fn rules_count_characters_and_refuse_blank_passwords() {
        assert_eq!(check("short"), Err(PasswordRuleError::TooShort));
        assert_eq!(check(&"x".repeat(1025)), Err(PasswordRuleError::TooLong));
        assert_eq!(check("        "), Err(PasswordRuleError::Blank));
        assert_eq!(check("\t \n \u{3000}   "), Err(PasswordRuleError::Blank));
        assert_eq!(check("   x    "), Ok(()));
        // Eight characters, more than eight bytes.
        assert_eq!(check("ääääääää"), Ok(()));
    }
}
