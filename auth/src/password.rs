//! Password hashing with Argon2id.
//!
//! Both functions are deliberately slow (tens of milliseconds of CPU); call them off the async
//! executor.

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Argon2 accepts longer inputs, but nobody needs them and they only invite abuse.
pub const MAX_PASSWORD_CHARS: usize = 1024;

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
}
