//! The one Graph client: all Microsoft Graph I/O goes through [`GraphClient`].
