//! Project automation: `cargo xtask <command>`.
//!
//! Commands:
//! - `codegen`: regenerate `crates/wharf-model/src/<service>.rs` from the
//!   botocore models in `../shared/aws-models/`.
//! - `codegen --check`: regenerate in memory and fail if any committed file
//!   differs (for CI).

mod codegen;
mod json;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask codegen [--check]";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["codegen"] => codegen(false),
        ["codegen", "--check"] => codegen(true),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => bail!("{USAGE}"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn codegen(check: bool) -> Result<ExitCode> {
    let root = workspace_root();
    let models = root.join("../shared/aws-models");
    let out_dir = root.join("crates/wharf-model/src");
    let mut stale = Vec::new();
    for service in codegen::SERVICES {
        let generated = codegen::generate(&models, service, &root)?;
        let path = out_dir.join(format!("{}.rs", service.module));
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let current = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {rel}")),
        };
        if current.as_deref() == Some(generated.code.as_str()) {
            if !check {
                println!("{rel}: up to date");
            }
            continue;
        }
        if check {
            let detail = match &current {
                None => "missing".to_owned(),
                Some(text) => first_difference(text, &generated.code),
            };
            stale.push(format!("  {rel} ({detail}), from {}", service.model));
        } else {
            std::fs::write(&path, &generated.code).with_context(|| format!("writing {rel}"))?;
            println!("{rel}: written ({} lines)", generated.code.lines().count());
            for (from, to) in &generated.notes.renamed {
                println!("  renamed shape {from} -> {to}");
            }
            for member in &generated.notes.boxed {
                println!("  boxed recursive member {member}");
            }
        }
    }
    if stale.is_empty() {
        if check {
            println!("generated code is up to date");
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: generated code is out of date:\n{}\nRun `cargo xtask codegen` and commit the result \
         (do not edit generated files by hand).",
        stale.join("\n")
    );
    Ok(ExitCode::FAILURE)
}

fn first_difference(old: &str, new: &str) -> String {
    let mut old_lines = old.lines();
    let mut new_lines = new.lines();
    let mut line = 1;
    loop {
        match (old_lines.next(), new_lines.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (None, None) => return "differs in line endings".to_owned(),
            _ => return format!("first difference at line {line}"),
        }
    }
}
