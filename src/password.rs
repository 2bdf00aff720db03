//! Passwords Entra ID accepts, and generating them.
//!
//! The rules (Microsoft's "Password policies and account restrictions in Microsoft Entra ID"):
//! 8..=256 characters, at least three of the four classes lowercase, uppercase, digits, symbols;
//! symbols only from [`SYMBOLS`] (and space); no other Unicode. `DisableStrongPassword` relaxes
//! the class rule. Apply checks a password with it before sending it (the desired-state checker
//! uses the length bounds), and the generator only ever produces passwords that pass it; the
//! sandbox keeps its own copy of the rules. Generation uses the OS CSPRNG.

use rand::seq::SliceRandom;
use rand::{Rng, TryRngCore};
use secrecy::SecretString;

/// Symbols Entra allows in a password (space is allowed too).
pub const SYMBOLS: &str = "@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ";

pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 256;

/// Why a password is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Weakness {
    #[error("shorter than {MIN_LENGTH} characters")]
    TooShort,
    #[error("longer than {MAX_LENGTH} characters")]
    TooLong,
    #[error("contains a character Entra does not allow")]
    DisallowedCharacter,
    #[error("uses fewer than three of: lowercase, uppercase, digits, symbols")]
    TooFewClasses,
}

/// Checks a password against Entra's rules. `strong` is false when the user's passwordPolicies
/// contain `DisableStrongPassword` (length and character set still apply).
pub fn check(password: &str, strong: bool) -> Result<(), Weakness> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        return Err(Weakness::TooShort);
    }
    if len > MAX_LENGTH {
        return Err(Weakness::TooLong);
    }
    let (mut lower, mut upper, mut digit, mut symbol) = (false, false, false, false);
    for c in password.chars() {
        match c {
            'a'..='z' => lower = true,
            'A'..='Z' => upper = true,
            '0'..='9' => digit = true,
            c if SYMBOLS.contains(c) => symbol = true,
            _ => return Err(Weakness::DisallowedCharacter),
        }
    }
    let classes = [lower, upper, digit, symbol].iter().filter(|b| **b).count();
    if strong && classes < 3 {
        return Err(Weakness::TooFewClasses);
    }
    Ok(())
}

/// Symbols used by the generator: the allowed set minus space, quotes and backslash, so that a
/// generated password survives copy-paste, shells and CSV.
const GENERATOR_SYMBOLS: &str = "@#$%^&*-_!+=[]{}:,.?/~()<>";
const LOWER: &str = "abcdefghijkmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &str = "23456789";

/// Generates a password of `length` characters (clamped to 8..=256) from the OS CSPRNG, with at
/// least one character of each of the four classes.
pub fn generate(length: u16) -> SecretString {
    let length = (length as usize).clamp(MIN_LENGTH, MAX_LENGTH);
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let classes: [&[u8]; 4] = [
        LOWER.as_bytes(),
        UPPER.as_bytes(),
        DIGITS.as_bytes(),
        GENERATOR_SYMBOLS.as_bytes(),
    ];
    let all: Vec<u8> = classes.concat();
    let mut chars: Vec<u8> = classes
        .iter()
        .map(|set| set[rng.random_range(0..set.len())])
        .collect();
    while chars.len() < length {
        chars.push(all[rng.random_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    SecretString::from(String::from_utf8(chars).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn rules() {
        assert_eq!(check("Ab1!", true), Err(Weakness::TooShort));
        assert_eq!(check(&"Ab1!".repeat(65), true), Err(Weakness::TooLong));
        assert_eq!(check("abcdefgh", true), Err(Weakness::TooFewClasses));
        assert_eq!(check("abcdEFGH", true), Err(Weakness::TooFewClasses));
        assert_eq!(check("abcdefgh", false), Ok(()));
        assert_eq!(check("Cuyo5459", true), Ok(()));
        assert_eq!(check("abcd efg1", true), Ok(()));
        assert_eq!(check("Abcdéfg1", true), Err(Weakness::DisallowedCharacter));
        assert_eq!(check("abc\tEFG1", true), Err(Weakness::DisallowedCharacter));
    }

    #[test]
    fn generated_passwords_pass_and_differ() {
        for len in [0u16, 8, 9, 20, 256, 1000] {
            let p = generate(len);
            let p = p.expose_secret();
            assert_eq!(p.len(), (len as usize).clamp(8, 256));
            check(p, true).unwrap();
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| GENERATOR_SYMBOLS.contains(c)));
        }
        assert_ne!(generate(20).expose_secret(), generate(20).expose_secret());
    }
}
