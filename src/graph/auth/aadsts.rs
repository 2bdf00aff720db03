//! What the token endpoint's answers mean: which are transient (retried) and which permanent
//! (failed at once), and a small table of well-known `AADSTS` codes with a one-line meaning and
//! what to do, so that a refused sign-in says more than Entra's own words.
//!
//! Sources: "Microsoft Entra authentication and authorization error codes"
//! (<https://learn.microsoft.com/entra/identity-platform/reference-error-codes>): its "Handling
//! error codes in your application" section lists the OAuth `error` values, among them
//! `temporarily_unavailable` ("The server is temporarily too busy to handle the request. Retry the
//! request."); its table gives the `AADSTS` codes. That page warns that codes and texts change:
//! pwdrift decides *retry or not* only by the HTTP status and the OAuth `error` value, never by a
//! code or a text; the table below only adds an explanation. An unknown code is shown as Entra
//! sent it, with the address of its error page (`https://login.microsoftonline.com/error?code=N`).

/// A well-known `AADSTS` code: what it means and what to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownCode {
    pub code: u64,
    pub meaning: &'static str,
    pub hint: &'static str,
}

const fn k(code: u64, meaning: &'static str, hint: &'static str) -> KnownCode {
    KnownCode {
        code,
        meaning,
        hint,
    }
}

/// The codes a pwdrift user is likely to meet, sorted by code.
pub const KNOWN_CODES: &[KnownCode] = &[
    k(50034, "the user account does not exist in this tenant",
      "check AZURE_USERNAME and the tenant (AZURE_TENANT_ID or --tenant)"),
    k(50053, "the account is locked (too many sign-in attempts) or its sign-in is blocked",
      "wait and try again, or ask an administrator to unlock it"),
    k(50055, "the user's password has expired",
      "sign in interactively once and change it"),
    k(50057, "the user account is disabled",
      "ask an administrator to enable it, or sign in as another user"),
    k(50076, "multi-factor authentication is required",
      "sign in with the device code (unset AZURE_PASSWORD) instead of username/password"),
    k(50079, "the user must register for multi-factor authentication",
      "sign in interactively once to register, then use the device code"),
    k(50126, "the username or password is wrong",
      "check AZURE_USERNAME and AZURE_PASSWORD"),
    k(53003, "Conditional Access blocked the sign-in",
      "ask an administrator which policy applies (the sign-in logs name it)"),
    k(65001, "the app has no consent for the permissions it asks for",
      "grant admin consent to the app's Microsoft Graph permissions"),
    k(70021, "no federated identity credential of the app matches the presented token",
      "check the federated credential's issuer, subject and audience on the app registration"),
    k(90002, "the tenant was not found",
      "check the tenant id or domain (AZURE_TENANT_ID or --tenant) and the cloud (--cloud, AZURE_AUTHORITY_HOST)"),
    k(500011, "the resource (Microsoft Graph) was not found in the tenant",
      "check the cloud (--cloud): the scope must name this cloud's Graph"),
    k(700016, "the application was not found in the tenant",
      "check AZURE_CLIENT_ID and the tenant; a multi-tenant app must be consented to in this tenant"),
    k(700024, "the client assertion is outside its valid time range",
      "check this machine's clock"),
    k(700027, "the client assertion's signature did not validate, or its certificate is not registered on the app",
      "upload the certificate of AZURE_CLIENT_CERTIFICATE_PATH to the app registration; the key in the PEM must be that certificate's"),
    k(700082, "the refresh token expired through inactivity",
      "sign in again"),
    k(700211, "no federated identity credential of the app matches the token's issuer",
      "check the federated credential's issuer on the app registration"),
    k(700212, "no federated identity credential of the app matches the token's audience",
      "check the federated credential's audience (api://AzureADTokenExchange by default)"),
    k(700213, "no federated identity credential of the app matches the token's subject",
      "check the federated credential's subject (for GitHub: repo, branch or environment)"),
    k(900023, "the tenant is neither a GUID nor a valid domain name",
      "check AZURE_TENANT_ID or --tenant"),
    k(1002012, "the scope is not valid for a client-credentials request",
      "check the cloud (--cloud): the scope is its Graph URL with /.default"),
    k(7000112, "the application is disabled",
      "ask an administrator to enable the app's service principal (enterprise application)"),
    k(7000215, "the client secret is not valid for this app",
      "check that AZURE_CLIENT_SECRET holds the secret's value (not its ID) of the app AZURE_CLIENT_ID"),
    k(7000218, "the request carried no client credential (client_assertion or client_secret)",
      "set AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH for this app"),
    k(7000222, "the client secret has expired",
      "create a new client secret for the app and update AZURE_CLIENT_SECRET"),
];

/// The entry of `code` in [`KNOWN_CODES`].
pub fn known(code: u64) -> Option<&'static KnownCode> {
    KNOWN_CODES
        .binary_search_by_key(&code, |c| c.code)
        .ok()
        .map(|i| &KNOWN_CODES[i])
}

/// Whether an answer of the token endpoint is transient, so that the same request may succeed
/// later: 408, 429 and every 5xx, or the OAuth error `temporarily_unavailable` whatever the
/// status. Everything else (`invalid_client`, `invalid_grant`, `unauthorized_client`,
/// `invalid_request`, ...) is permanent: repeating the request gets the same answer.
pub fn is_transient(status: u16, oauth_error: Option<&str>) -> bool {
    matches!(status, 408 | 429 | 500..=599)
        || oauth_error.is_some_and(|e| e.trim() == "temporarily_unavailable")
}

/// The `AADSTS` codes of an answer: its `error_codes`, else the `AADSTSnnnn` numbers in its
/// description; each once, in order.
pub fn codes(error_codes: &[u64], description: &str) -> Vec<u64> {
    fn push(out: &mut Vec<u64>, c: u64) {
        if !out.contains(&c) && out.len() < 8 {
            out.push(c);
        }
    }
    let mut out: Vec<u64> = Vec::new();
    if !error_codes.is_empty() {
        error_codes.iter().for_each(|&c| push(&mut out, c));
        return out;
    }
    let mut rest = description;
    while let Some(i) = rest.find("AADSTS") {
        rest = &rest[i + 6..];
        let digits: String = rest
            .chars()
            .take_while(char::is_ascii_digit)
            .take(10)
            .collect();
        if let Ok(c) = digits.parse::<u64>() {
            push(&mut out, c);
        }
    }
    out
}

/// One line explaining `codes`: each known one's meaning and hint, each unknown one with the
/// address of its error page.
pub fn explain(codes: &[u64]) -> String {
    codes
        .iter()
        .map(|&c| match known(c) {
            Some(k) => format!("AADSTS{c} means {}: {}", k.meaning, k.hint),
            None => format!(
                "AADSTS{c} is not one pwdrift explains: see https://login.microsoftonline.com/error?code={c}"
            ),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_each_code_once() {
        assert!(KNOWN_CODES.windows(2).all(|w| w[0].code < w[1].code));
        for c in [7000215, 700016, 90002, 7000222, 700027, 50034] {
            assert!(known(c).is_some(), "{c}");
        }
        assert!(known(1).is_none());
    }

    #[test]
    fn transient_answers_are_told_from_permanent_ones() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_transient(s, None), "{s}");
        }
        assert!(is_transient(400, Some("temporarily_unavailable")));
        for e in [
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "invalid_request",
        ] {
            assert!(!is_transient(400, Some(e)), "{e}");
            assert!(!is_transient(401, Some(e)), "{e}");
        }
        assert!(!is_transient(404, None));
    }

    #[test]
    fn codes_come_from_error_codes_else_the_description() {
        assert_eq!(codes(&[7000215, 7000215], "AADSTS1: x"), vec![7000215]);
        assert_eq!(
            codes(
                &[],
                "AADSTS700016: app. Trace ID: x AADSTS90002 and AADSTSxyz"
            ),
            vec![700016, 90002]
        );
        assert!(codes(&[], "no code").is_empty());
    }

    #[test]
    fn known_codes_are_explained_and_unknown_ones_linked() {
        let e = explain(&[7000222, 4242]);
        assert!(
            e.starts_with("AADSTS7000222 means the client secret has expired: create a new"),
            "{e}"
        );
        assert!(
            e.contains("AADSTS4242 is not one pwdrift explains: see https://login.microsoftonline.com/error?code=4242"),
            "{e}"
        );
    }
}
