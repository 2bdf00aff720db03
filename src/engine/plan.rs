//! Plan: desired state against live state, by Graph's clock ([`super::clock`]), sealed with what it
//! was made from (so that `apply FILE` can derive it again; see [`super::recheck()`]).

use std::path::PathBuf;

use crate::config;
use crate::live::LiveError;
use crate::plan::{DesiredFile, MadeFrom, Plan};

use super::session::Session;
use super::settings::TargetSettings;
use super::{EngineError, Observer, Rejected};

/// What a plan is made from: the desired-state files read (as loaded, with their digests) and
/// the filters, for `apply FILE` to derive the plan again.
pub fn made_from(target: &TargetSettings, digests: &[(PathBuf, String)]) -> MadeFrom {
    MadeFrom {
        files: digests
            .iter()
            .map(|(path, sha256)| DesiredFile {
                path: path.clone(),
                sha256: sha256.clone(),
            })
            .collect(),
        tenants: target.tenants.clone(),
        targets: target.targets.clone(),
        shard: target.shard.map(|s| s.to_string()),
    }
}

/// Connects, reads live state, diffs (deciding by Graph's clock, see [`super::clock`]) and seals the plan (its content hash,
/// streamed: no copy) with what it was made from, so that it is saved as it is. The declared
/// users are let go without being freed ([`super::leak_at_exit`]): a plan is the last step of
/// the process that makes it, and freeing 100,000 of them one by one costs more than the exit.
pub async fn plan(
    settings: &TargetSettings,
    loaded: config::Loaded,
    observer: &dyn Observer,
) -> Result<Result<Plan, Rejected>, EngineError> {
    let made_from = made_from(settings, &loaded.digests);
    let (mut session, sources) =
        match open(settings, loaded.state, loaded.sources, observer).await? {
            Ok(opened) => opened,
            Err(rejected) => return Ok(Err(rejected)),
        };
    let planned = session.plan(&settings.targets, observer).await;
    for t in &mut session.tenants {
        super::leak_at_exit(std::mem::take(&mut t.desired.users));
    }
    session.close().await;
    match planned {
        Ok(mut plan) => {
            plan.made_from = made_from;
            Ok(Ok(plan.sealed()))
        }
        Err(e) => rejected_or_error(e, sources),
    }
}

/// A resolution problem as [`Rejected::Mismatch`] (the lines shown come from `sources`), any
/// other failure as an error.
pub(crate) fn rejected_or_error<T>(
    e: LiveError,
    sources: config::SourceMap,
) -> Result<Result<T, Rejected>, EngineError> {
    match e {
        LiveError::Resolution(diagnostics) => Ok(Err(Rejected::Mismatch {
            diagnostics,
            sources,
        })),
        e => Err(e.into()),
    }
}

/// [`Session::open`], an alias conflict returned as [`Rejected::AliasConflict`]; the source map
/// comes back with the session, for the diagnostics of the plan step.
pub(crate) async fn open(
    settings: &TargetSettings,
    desired: config::DesiredState,
    sources: config::SourceMap,
    observer: &dyn Observer,
) -> Result<Result<(Session, config::SourceMap), Rejected>, EngineError> {
    match Session::open(settings, desired, observer).await {
        Ok(s) => Ok(Ok((s, sources))),
        Err(EngineError::AliasConflict(super::AliasConflict(diagnostics))) => {
            Ok(Err(Rejected::AliasConflict {
                diagnostics,
                sources,
            }))
        }
        Err(e) => Err(e),
    }
}
