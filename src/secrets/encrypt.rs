//! age encryption of the passwords in the secrets file (`--secrets-recipient`): the X25519
//! recipients as the flag takes them, and one armored age message per password, which the
//! standard `age -d` opens.

use std::io::Write;

/// Why a password could not be encrypted to the recipients.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("{0}")]
    Recipients(#[from] age::EncryptError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// A `--secrets-recipient` value that is not an age X25519 recipient.
#[derive(Debug, thiserror::Error)]
#[error("not an age X25519 recipient (age1...): {reason}")]
pub struct RecipientError {
    /// age's reason
    reason: &'static str,
}

/// Encrypts `plaintext` to every recipient as one armored age message.
pub fn encrypt_armored(
    recipients: &[age::x25519::Recipient],
    plaintext: &[u8],
) -> Result<String, EncryptError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut writer = encryptor.wrap_output(armor)?;
    writer.write_all(plaintext)?;
    writer.finish().and_then(|armor| armor.finish())?;
    Ok(String::from_utf8(out)?)
}

/// Parses an age recipient (`age1...`), as `--secrets-recipient` takes it.
pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, RecipientError> {
    s.trim()
        .parse::<age::x25519::Recipient>()
        .map_err(|reason| RecipientError { reason })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::secrets::{read_passwords, Journal, Method, OpenMode, SecretsFile};
    use secrecy::{ExposeSecret, SecretString};

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn encrypted_passwords_open_only_with_the_identity_and_metadata_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.jsonl");
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let recipient = parse_recipient(&id.to_public().to_string()).unwrap();
        let (mut f, _) = SecretsFile::open(&path, OpenMode::CreateNew, vec![recipient]).unwrap();
        f.intent(
            "t",
            "1",
            "a@x",
            Method::Patch,
            Some(&pw("Secret-Canary-1!")),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("Secret-Canary-1!"));
        assert!(text.contains("BEGIN AGE ENCRYPTED FILE"));
        assert!(text.contains("a@x"), "metadata readable without the key");
        assert_eq!(Journal::parse(&path, &text).unwrap().pending().count(), 1);
        let pws = read_passwords(&text, Some(&id)).unwrap();
        assert_eq!(pws[0].2.expose_secret(), "Secret-Canary-1!");
        assert!(read_passwords(&text, Some(&other)).is_err());
        assert!(read_passwords(&text, None).is_err());
    }
}
