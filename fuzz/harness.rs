//! The bodies of the fuzz targets: each feeds arbitrary bytes to the functions pwdrift calls on a
//! file or a Graph answer, and uses whatever comes back the way pwdrift would (renders it,
//! counts it). Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the corpus
//! regression test of the normal suite (`tests/it/fuzz_corpus.rs`), so both run the same code.
//! The only promise checked here is "no panic" (and, in the corpus test, bounded time).

use std::path::Path;

/// A target's body.
pub type Body = fn(&[u8]);

/// `(target name, body)`, the names being those of `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: &[(&str, Body)] = &[
    ("desired_state", desired_state),
    ("saved_plan", saved_plan),
    ("graph_users_page", graph_users_page),
    ("graph_batch", graph_batch),
    ("graph_token", graph_token),
    ("graph_operation", graph_operation),
];

/// The first two bytes as an HTTP status (100..=599), and the rest.
fn status_and_body(data: &[u8]) -> (u16, &[u8]) {
    match data {
        [a, b, rest @ ..] => (100 + u16::from_le_bytes([*a, *b]) % 500, rest),
        _ => (200, data),
    }
}

/// Desired-state loader and validator: parse, check, merge, then render every diagnostic with
/// its snippet (as `validate` does) and the summary line.
pub fn desired_state(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pwdrift::config::load_str(Path::new("fuzz.yaml"), text) {
        Ok(loaded) => {
            let _ = pwdrift::config::diag::render(&loaded.warnings, &loaded.sources, true);
            let _ = pwdrift::commands::validate::summary(&loaded);
            for t in &loaded.state.tenants {
                let _ = pwdrift::config::merge::duplicates(t);
                for u in &t.users {
                    let _ =
                        pwdrift::config::merge_directives(&[(&u.directives, &u.origin)], &[], "u");
                }
            }
        }
        Err(invalid) => {
            let _ = pwdrift::config::diag::render(&invalid.diagnostics, &invalid.sources, true);
            let _ = pwdrift::commands::validate::failure_line(&invalid.diagnostics);
        }
    }
}

/// Saved-plan reader (`apply FILE`): parse, then render it in every format and summarise.
pub fn saved_plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = pwdrift::plan::parse_saved(text) {
        let _ = plan.summary();
        let _ = pwdrift::render::text(&plan, false);
        let _ = pwdrift::render::text_verbose(&plan, true);
        let _ = pwdrift::render::json(&plan);
        let _ = pwdrift::render::markdown(&plan);
    }
}

/// A `GET /users` page: decode, then convert every user to the compared shape; the same bytes as
/// an error answer.
pub fn graph_users_page(data: &[u8]) {
    use pwdrift::graph::client::parse;
    if let Ok(page) = parse::users_page(data) {
        for u in &page.value {
            let _ = u.is_user();
            let live = pwdrift::engine::steps::live::LiveUser::from_graph(u, vec![]);
            let _ = live.fingerprint();
        }
    }
    let (status, body) = status_and_body(data);
    let e = parse::error(status, body);
    let _ = (e.to_string(), e.status(), e.code(), e.outcome_unknown());
}

/// A `$batch` answer: the envelope with a status, then each inner response as the read of a
/// user named by id, UPN or SID.
pub fn graph_batch(data: &[u8]) {
    use pwdrift::graph::client::{parse, UserKey};
    let (status, body) = status_and_body(data);
    if let parse::BatchEnvelope::Responses(responses) = parse::batch_envelope(status, body) {
        let keys = [
            UserKey::Id("0b8f6b1c-3f41-4b8e-9a55-1c2d3e4f5a01".into()),
            UserKey::Upn("alice@contoso.com".into()),
            UserKey::Sid("S-1-5-21-1-2-3-1104".into()),
        ];
        for (i, r) in responses.into_iter().enumerate() {
            match parse::batch_user(&keys[i % keys.len()], r) {
                Ok(u) => {
                    let _ = pwdrift::engine::steps::live::LiveUser::from_graph(&u, vec![])
                        .fingerprint();
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
    }
}

/// A token endpoint answer with a status; the bytes as an access token (its `tid`).
pub fn graph_token(data: &[u8]) {
    let (status, body) = status_and_body(data);
    if let Err(e) = pwdrift::graph::auth::token_response(status, body) {
        let _ = e.to_string();
    }
    let _ = pwdrift::graph::auth::token_response(200, data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pwdrift::graph::auth::tenant_id_from_token(text);
    }
}

/// A long-running operation's status document; the bytes as a `Retry-After` value.
pub fn graph_operation(data: &[u8]) {
    use pwdrift::graph::client::parse;
    if let Ok(op) = parse::operation(data) {
        let _ = op.status.is_terminal();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse::retry_after(text);
    }
}
