//! `pwdrift schema`: print one schema, list them, or write them all.

use anyhow::Context;

use crate::cli::{ExitStatus, SchemaArgs};
use crate::printer::Printer;
use crate::schema;

pub fn run(args: SchemaArgs, printer: &Printer) -> anyhow::Result<ExitStatus> {
    if args.list {
        for spec in schema::all() {
            printer.outln(&format!("{:<18} {}", spec.name, spec.about))?;
        }
        return Ok(ExitStatus::Success);
    }
    if let Some(dir) = args.write {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for spec in schema::all() {
            let path = dir.join(schema::file_name(&spec));
            std::fs::write(&path, schema::render(&spec))
                .with_context(|| format!("cannot write {}", path.display()))?;
            printer.info(&format!("wrote {}", path.display()));
        }
        return Ok(ExitStatus::Success);
    }
    let Some(name) = args.name else {
        anyhow::bail!("name a schema (see `pwdrift schema --list`), or use --write DIR");
    };
    let Some(spec) = schema::find(&name) else {
        let names: Vec<_> = schema::all().iter().map(|s| s.name).collect();
        anyhow::bail!("no schema named `{name}`; known: {}", names.join(", "));
    };
    printer.out(&schema::render(&spec))?;
    Ok(ExitStatus::Success)
}
