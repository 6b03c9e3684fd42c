//! Embeds the workspace's `migrations/*.sql` into the postgres adapter (feature `postgres`).
//!
//! The list is generated rather than written by hand so that adding a migration is what the
//! seed document says it is: drop a numbered file into `migrations/` and restart (rebuild) the
//! gateway.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = manifest.join("../../migrations");
    println!("cargo:rerun-if-changed={}", dir.display());
    if env::var_os("CARGO_FEATURE_POSTGRES").is_none() {
        return;
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    {
        let entry = entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".sql") {
            continue;
        }
        assert!(
            is_migration_name(&name),
            "migrations/{name}: a migration is named NNNN_name.sql (digits, '_', then [a-z0-9_])"
        );
        let path = entry
            .path()
            .canonicalize()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        files.push((name, path));
    }
    files.sort();
    let mut out = String::from(
        "/// Every file of `migrations/`, in name order: (file name, SQL).\n\
         pub(crate) const MIGRATIONS: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &files {
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let target =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations.rs");
    fs::write(&target, out).unwrap_or_else(|e| panic!("cannot write {}: {e}", target.display()));
}

/// `NNNN_name.sql`: a numeric prefix (so name order is apply order), then a lowercase name.
fn is_migration_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".sql") else {
        return false;
    };
    let Some((number, rest)) = stem.split_once('_') else {
        return false;
    };
    !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
