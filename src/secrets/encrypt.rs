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
