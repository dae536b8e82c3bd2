//! `vmscaler dist --out DIR` (hidden): shell completions and man pages for packaging.
//!
//! Generated from the same clap definition the binary parses ([`crate::cli::Cli`]), so they
//! never drift from the real flags: `DIR/completions/{vmscaler.bash,_vmscaler,vmscaler.fish}`
//! and `DIR/man/vmscaler.1` plus one `vmscaler-<subcommand>.1` per visible subcommand.
//! `scripts/build-deb.sh` runs it and ships the result. Not here: installing the files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write `completions/` and `man/` into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Completion file name per shell, as each shell's completion directory expects it.
pub const COMPLETIONS: [(Shell, &str); 3] =
    [(Shell::Bash, "vmscaler.bash"), (Shell::Zsh, "_vmscaler"), (Shell::Fish, "vmscaler.fish")];

/// Writes every completion script into `dir`; returns the files written.
pub fn write_completions(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (shell, name) in COMPLETIONS {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "vmscaler", &mut buf);
        let path = dir.join(name);
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `vmscaler.1` and one page per visible subcommand into `dir`; returns the files.
pub fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut pages = vec![("vmscaler".to_owned(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        // After `build()`, clap names a subcommand `vmscaler-<name>` and its usage `vmscaler <name>`.
        let name = sub.get_display_name().map_or_else(|| format!("vmscaler-{}", sub.get_name()), str::to_owned);
        pages.push((name, sub.clone()));
    }
    let mut written = Vec::new();
    for (name, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf).with_context(|| format!("cannot render man page {name}"))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut files = write_completions(&args.out.join("completions"))?;
    files.extend(write_man_pages(&args.out.join("man"))?);
    for f in files {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}
