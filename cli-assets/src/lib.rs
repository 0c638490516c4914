//! Operator plumbing shared by the rserpool-rs daemons: the `--metrics` HTTP endpoint
//! ([`metrics_http`]), the systemd READY/WATCHDOG loop ([`systemd`]), and man pages and shell completions (issue 16 item 4), from
//! their clap definitions, so that `--help`, the man page and the completions never
//! disagree. No build script: each binary writes them on request, at packaging time:
//!
//! ```text
//! enrp-server --generate-assets DIR      # also proxy-pe, legacy-daemon, rsp
//! DIR/man/enrp-server.1                  # (+ NAME-SUBCOMMAND.1 for each subcommand)
//! DIR/completions/enrp-server.bash       # bash-completion
//! DIR/completions/_enrp-server           # zsh
//! DIR/completions/enrp-server.fish       # fish
//! ```
//!
//! `--generate-assets` must be the first argument; it is not part of the binaries' clap
//! definitions (so it does not show in `--help`, and enrp-server's TOML options stay as
//! they are). The Debian packages (`[package.metadata.deb]`, README "Packages") install
//! the files from `target/assets/NAME/`.

pub mod metrics_http;
pub mod systemd;

use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;

/// The option that asks a binary for its assets.
pub const FLAG: &str = "--generate-assets";

/// The shells completions are written for, with the file name each one's loader expects.
pub const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "{}.bash"),
    (Shell::Zsh, "_{}"),
    (Shell::Fish, "{}.fish"),
];

/// Parses an `ADDR[:PORT]` option value (IPv6 with a port as `[ADDR]:PORT`, a bare IPv6
/// address with or without brackets); a bare address gets `default_port`. Used for
/// `--csp` of the daemons and the `rsp` tools' registrar and monitor addresses.
pub fn parse_endpoint(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("`{s}` is neither ADDR nor ADDR:PORT (IPv6 with a port: [ADDR]:PORT)"))
}

/// Writes the man pages and completions of `cmd` under `dir`; returns the files written.
pub fn generate(mut cmd: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    cmd.build();
    let name = cmd.get_name().to_string();
    let man = dir.join("man");
    let comp = dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&comp)?;
    let mut written = Vec::new();
    let mut pages = vec![(name.clone(), cmd.clone())];
    // The generated `help` subcommand gets no page of its own.
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = format!("{name}-{}", sub.get_name());
        // The page's NAME and SYNOPSIS show the full command line (`proxy-pe run`). clap
        // takes `&'static str` names here (without its `string` feature); this process
        // writes the pages and exits, so the few leaked names are of no concern.
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let mut sub = sub
            .clone()
            .name(leak(page.clone()))
            .bin_name(format!("{name} {}", sub.get_name()));
        if let Some(v) = cmd.get_version() {
            sub = sub.version(leak(v.to_string()));
        }
        pages.push((page, sub));
    }
    for (page, c) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        let p = man.join(format!("{page}.1"));
        std::fs::write(&p, buf)?;
        written.push(p);
    }
    for (shell, pattern) in SHELLS {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.clone(), &mut buf);
        let p = comp.join(pattern.replace("{}", &name));
        std::fs::write(&p, buf)?;
        written.push(p);
    }
    Ok(written)
}

/// If the process was started as `BINARY --generate-assets DIR`, writes the assets of
/// `cmd()` to DIR, prints the files written and returns the exit code; otherwise `None`
/// (the binary goes on with its normal command line).
pub fn handle(cmd: impl FnOnce() -> Command) -> Option<ExitCode> {
    handle_args(std::env::args_os().skip(1).collect(), cmd)
}

/// [`handle`] on explicit arguments (without the program name).
pub fn handle_args(args: Vec<OsString>, cmd: impl FnOnce() -> Command) -> Option<ExitCode> {
    if args.first().map(|a| a.as_os_str()) != Some(FLAG.as_ref()) {
        return None;
    }
    let cmd = cmd();
    let name = cmd.get_name().to_string();
    let [_, dir] = args.as_slice() else {
        eprintln!("{name}: usage: {name} {FLAG} DIR (writes DIR/man/*.1 and DIR/completions/*)");
        return Some(ExitCode::from(2));
    };
    let dir = PathBuf::from(dir);
    match generate(cmd, &dir) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            Some(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!(
                "{name}: cannot write assets under {}: {e}; create the directory or choose a writable one",
                dir.display()
            );
            Some(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    #[test]
    fn endpoints_with_and_without_port() {
        let sa = |s: &str| s.parse::<SocketAddr>().expect("lit");
        for (given, want) in [
            ("10.0.0.1:5000", sa("10.0.0.1:5000")),
            ("10.0.0.1", sa("10.0.0.1:2960")),
            ("[::1]:5000", sa("[::1]:5000")),
            ("[::1]", sa("[::1]:2960")),
            ("::1", sa("[::1]:2960")),
        ] {
            assert_eq!(parse_endpoint(given, 2960), Ok(want), "{given}");
        }
        let e = parse_endpoint("monitor:5000", 2960).expect_err("not an address");
        assert!(
            e.starts_with("`monitor:5000` is neither ADDR nor ADDR:PORT"),
            "{e}"
        );
    }

    fn demo() -> Command {
        Command::new("demo")
            .version("1.2.3")
            .about("A demo daemon")
            .arg(
                Arg::new("listen")
                    .long("listen")
                    .help("Where to listen")
                    .default_value("0.0.0.0:1"),
            )
            .subcommand(
                Command::new("check")
                    .about("Check a file")
                    .arg(Arg::new("strict").long("strict").action(ArgAction::SetTrue)),
            )
    }

    #[test]
    fn writes_pages_and_completions() {
        let dir = std::env::temp_dir().join(format!("cli-assets-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = generate(demo(), &dir).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "man/demo.1",
                "man/demo-check.1",
                "completions/demo.bash",
                "completions/_demo",
                "completions/demo.fish"
            ]
        );
        let man = std::fs::read_to_string(dir.join("man/demo.1")).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{man}");
        assert!(man.contains(".TH demo 1"), "{man}");
        assert!(man.contains("\\-\\-listen"), "{man}");
        assert!(man.contains("0.0.0.0:1"), "{man}");
        let sub = std::fs::read_to_string(dir.join("man/demo-check.1")).unwrap();
        assert!(sub.contains("\\-\\-strict"), "{sub}");
        let bash = std::fs::read_to_string(dir.join("completions/demo.bash")).unwrap();
        assert!(
            bash.contains("complete -F _demo") && bash.contains("--listen"),
            "{bash}"
        );
        let fish = std::fs::read_to_string(dir.join("completions/demo.fish")).unwrap();
        assert!(
            fish.contains("complete -c demo") && fish.contains("-l strict"),
            "{fish}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_the_first_argument_triggers() {
        assert!(handle_args(vec!["--help".into()], demo).is_none());
        assert!(handle_args(vec!["x".into(), FLAG.into()], demo).is_none());
        assert_eq!(
            handle_args(vec![FLAG.into()], demo),
            Some(ExitCode::from(2))
        );
    }
}
