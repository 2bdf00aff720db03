//! Credentials and token acquisition (client secret, certificate, workload identity federation,
//! GitHub Actions OIDC, pre-acquired token, device code), with a per-tenant token cache.
