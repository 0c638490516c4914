//! Start-up errors of the `enrp-server` binary name the file or address and the fix
//! (issue 16 item 6).

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enrp-server"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run enrp-server");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn asap_address_in_use_is_named_with_the_fix() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = run(&[
        "--asap",
        &addr,
        "--enrp",
        "off",
        "--transport",
        "tcp",
        "--asap-announce",
        "off",
        "--enrp-announce",
        "off",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("ASAP [{addr}]")), "{err}");
    assert!(err.contains("Address already in use"), "{err}");
    assert!(
        err.contains("choose another --asap/--enrp address"),
        "{err}"
    );
}

#[test]
fn missing_config_file_is_named_with_the_fix() {
    let path = std::env::temp_dir().join(format!("enrp-server-absent-{}.toml", std::process::id()));
    let (code, err) = run(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("config file {}:", path.display())),
        "{err}"
    );
    assert!(err.contains("registrar.example.toml"), "{err}");
}
