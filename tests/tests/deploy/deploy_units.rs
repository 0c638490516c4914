//! The systemd units in `enrp-server/deploy/`, `proxy-pe/deploy/` and
//! `legacy-daemon/deploy/` (issue 16 item 2): parsed here for the settings the project
//! requires (Type=notify, WatchdogSec, hardening, reload by SIGHUP), and checked by
//! `systemd-analyze verify` when it is installed — which exits 0 even on a bad value, so
//! any line it prints about a unit fails the test.

use crate::root;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Section → key → values (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

const UNITS: [&str; 3] = [
    "enrp-server/deploy/enrp-server.service",
    "proxy-pe/deploy/proxy-pe.service",
    "legacy-daemon/deploy/legacy-daemon.service",
];

/// systemd.syntax(7) subset: `[Section]`, `Key=value`, `#`/`;` comments; no line
/// continuations in our units (rejected so that the parser stays exact).
fn parse(text: &str) -> Result<Unit, String> {
    let mut unit = Unit::new();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.ends_with('\\') {
            return Err(format!("line {}: continuation lines not used here", n + 1));
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            unit.entry(name.to_string()).or_default();
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "line {}: neither [Section] nor Key=value: {raw}",
                n + 1
            ));
        };
        let Some(s) = &section else {
            return Err(format!("line {}: key before any section", n + 1));
        };
        unit.get_mut(s)
            .expect("section inserted")
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    Ok(unit)
}

fn one<'a>(u: &'a Unit, section: &str, key: &str) -> Option<&'a str> {
    u.get(section)?.get(key)?.last().map(String::as_str)
}

fn load(rel: &str) -> Unit {
    let text = std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    parse(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn units_have_notify_watchdog_reload_and_hardening() {
    for rel in UNITS {
        let u = load(rel);
        let s = |k| one(&u, "Service", k);
        assert_eq!(s("Type"), Some("notify"), "{rel}");
        let wd = s("WatchdogSec").unwrap_or_else(|| panic!("{rel}: WatchdogSec"));
        assert!(
            wd.trim_end_matches('s').parse::<u32>().is_ok_and(|v| v > 0),
            "{rel}: WatchdogSec={wd}"
        );
        assert_eq!(s("ExecReload"), Some("/bin/kill -HUP $MAINPID"), "{rel}");
        assert_eq!(s("NoNewPrivileges"), Some("yes"), "{rel}");
        assert_eq!(s("ProtectSystem"), Some("strict"), "{rel}");
        assert!(
            s("CapabilityBoundingSet").is_some(),
            "{rel}: capability bounding"
        );
        assert!(
            s("DynamicUser") == Some("yes") || s("User").is_some_and(|u| u != "root"),
            "{rel}: DynamicUser or a dedicated user"
        );
        assert!(s("ExecStart").is_some_and(|e| e.starts_with('/')), "{rel}");
        assert_eq!(
            one(&u, "Install", "WantedBy"),
            Some("multi-user.target"),
            "{rel}"
        );
        // Ambient capabilities stay within the bounding set.
        let bound: Vec<&str> = s("CapabilityBoundingSet")
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        for cap in s("AmbientCapabilities")
            .unwrap_or_default()
            .split_whitespace()
        {
            assert!(
                bound.contains(&cap),
                "{rel}: ambient {cap} outside the bounding set"
            );
        }
    }
    // The registrar needs no capability at all; the status daemon exactly the /proc ones.
    let reg = load(UNITS[0]);
    assert_eq!(one(&reg, "Service", "CapabilityBoundingSet"), Some(""));
    let daemon = load(UNITS[2]);
    assert_eq!(
        one(&daemon, "Service", "CapabilityBoundingSet"),
        Some("CAP_SYS_PTRACE CAP_DAC_READ_SEARCH")
    );
    assert_eq!(
        one(&daemon, "Service", "ProtectProc"),
        None,
        "other users' /proc visible"
    );
}

#[test]
fn parser_rejects_what_it_does_not_understand() {
    assert!(parse("Type=notify\n").is_err());
    assert!(parse("[Service]\nType notify\n").is_err());
    let u = parse("[Service]\nType=notify\n# c\nExecStart=/a\nExecStart=/b\n").expect("ok");
    assert_eq!(one(&u, "Service", "ExecStart"), Some("/b"));
}

/// Runs `systemd-analyze verify` on copies of `units` whose binaries point at
/// `/bin/true` (verify checks that ExecStart executables exist); (success, its output).
fn verify(units: &[(String, String)]) -> Option<(bool, String)> {
    let probe = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .ok()?;
    if !probe.status.success() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("rserpool-units-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("temp dir");
    for b in ["enrp-server", "proxy-pe", "legacy-daemon"] {
        std::os::unix::fs::symlink("/bin/true", bin.join(b)).expect("symlink");
    }
    let mut paths = Vec::new();
    for (name, text) in units {
        let text = text
            .replace("/usr/local/sbin/", &format!("{}/", bin.display()))
            .replace("/usr/local/bin/", &format!("{}/", bin.display()));
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write unit");
        paths.push(p);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("systemd-analyze runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success() && text.trim().is_empty(), text))
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let units: Vec<(String, String)> = UNITS
        .iter()
        .map(|rel| {
            let name = Path::new(rel)
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(root().join(rel)).expect("read unit");
            (name, text)
        })
        .collect();
    let Some((ok, text)) = verify(&units) else {
        eprintln!("systemd-analyze not installed: only the parser checks ran");
        return;
    };
    assert!(ok, "systemd-analyze verify: {text}");
    // The check can fail: a wrong value is reported (verify still exits 0).
    let mut bad = units[0].clone();
    bad.0 = "bad.service".into();
    bad.1 = bad
        .1
        .replace("ProtectSystem=strict", "ProtectSystem=stricter");
    let (ok, text) = verify(&[bad]).expect("installed");
    assert!(!ok && text.contains("stricter"), "{text}");
}
