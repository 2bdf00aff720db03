//! Entra ID's password rules as the sandbox enforces them, and the passwords it generates for a
//! `resetPassword` without `newPassword`.
//!
//! Written from Microsoft's documentation ("Microsoft Entra password policies": 8 to 256
//! characters, at least three of lowercase, uppercase, digits and symbols, symbols from a fixed
//! list, no other Unicode; `DisableStrongPassword` lifts the three-of-four rule) and NOT shared
//! with pwdrift's own check. The sandbox is a test oracle: a mistake in the client's rules must
//! show up as a refusal here, so the two are written separately on purpose.
//!
//! Not modelled: the banned-password list (the real service may refuse a password these rules
//! accept).

use rand::Rng;

/// The symbols the documentation lists as allowed, besides the space.
const ALLOWED_SYMBOLS: [char; 33] = [
    '@', '#', '$', '%', '^', '&', '*', '-', '_', '!', '+', '=', '[', ']', '{', '}', '|', '\\', ':',
    '\'', ',', '.', '?', '/', '`', '~', '"', '(', ')', ';', '<', '>', ' ',
];

/// Does Entra accept `password` for a user? `strong` is false when the user's passwordPolicies
/// contain `DisableStrongPassword` (length and the character set still apply).
pub fn acceptable(password: &str, strong: bool) -> bool {
    let length = password.chars().count();
    if !(8..=256).contains(&length) {
        return false;
    }
    if !password
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ALLOWED_SYMBOLS.contains(&c))
    {
        return false;
    }
    if !strong {
        return true;
    }
    let has = |pred: fn(&char) -> bool| password.chars().any(|c| pred(&c)) as u8;
    let classes = has(char::is_ascii_lowercase)
        + has(char::is_ascii_uppercase)
        + has(char::is_ascii_digit)
        + has(|c| ALLOWED_SYMBOLS.contains(c));
    classes >= 3
}

/// A system-generated temporary password in the shape of the documentation's example
/// (`Cuyo5459`): a capitalised pronounceable syllable pair and four digits. Random, so two
/// resets give two passwords; always [`acceptable`].
pub fn system_generated() -> String {
    const CONSONANTS: &[u8] = b"bcdfghjkmnpqrstvwxyz";
    const VOWELS: &[u8] = b"aeiou";
    let mut rng = rand::rng();
    let mut pick = |set: &[u8]| set[rng.random_range(0..set.len())] as char;
    let mut out = String::with_capacity(8);
    out.push(pick(CONSONANTS).to_ascii_uppercase());
    out.push(pick(VOWELS));
    out.push(pick(CONSONANTS));
    out.push(pick(VOWELS));
    for _ in 0..4 {
        out.push(pick(b"0123456789"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_rules() {
        assert!(!acceptable("Ab1!xyz", true), "7 characters");
        assert!(acceptable("Ab1!xyzw", true), "8 characters");
        assert!(acceptable(&"Ab1!".repeat(64), true), "256 characters");
        assert!(
            !acceptable(&format!("x{}", "Ab1!".repeat(64)), true),
            "257 characters"
        );
        assert!(!acceptable("abcdefgh", true), "one class");
        assert!(!acceptable("abcdEFGH", true), "two classes");
        assert!(acceptable("abcdEFG1", true), "three classes");
        assert!(acceptable("abcd efg1", true), "space is a symbol");
        assert!(acceptable("abcdefgh", false), "DisableStrongPassword");
        assert!(!acceptable("abcdéfG1", true), "non-ASCII letter");
        assert!(!acceptable("abc\tEFG1", true), "tab");
        assert!(
            !acceptable("abcdéfgh", false),
            "character set applies without strong"
        );
    }

    #[test]
    fn generated_passwords_are_acceptable_and_differ() {
        let a: Vec<String> = (0..50).map(|_| system_generated()).collect();
        for p in &a {
            assert_eq!(p.len(), 8);
            assert!(acceptable(p, true), "{p}");
        }
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 40);
    }
}
