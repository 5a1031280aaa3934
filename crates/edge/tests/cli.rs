//! The `xmpp-edge` command line: check-config and the user commands.

mod common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::binary;

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that fails before reading its input closes the pipe early: not an error.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn example_config_is_accepted() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("xmpp-edge.example.toml");
    let out = run(&["check-config", example.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("OK"), "{}", text(&out.stdout));
    // And it spells out exactly the embedded defaults.
    let example = edge::Config::load(&example).unwrap();
    let defaults = edge::Config::embedded();
    assert_eq!(
        format!("{:?}", example.limits),
        format!("{:?}", defaults.limits)
    );
    assert_eq!(
        format!("{:?}", example.shutdown),
        format!("{:?}", defaults.shutdown)
    );
    assert_eq!(
        format!("{:?}", example.listeners),
        format!("{:?}", defaults.listeners)
    );
    assert_eq!(example.domains, defaults.domains);
    assert_eq!(
        format!("{:?}", example.admin),
        format!("{:?}", defaults.admin)
    );
}

#[test]
fn unknown_key_is_rejected_with_its_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "domains = [\"localhost\"]\n\n[limits]\nidle_timeot = \"5s\"\n",
    )
    .unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("idle_timeot") && err.contains("line 4") && err.contains("bad.toml"),
        "{err}"
    );
}

#[test]
fn invalid_values_and_missing_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[tls]\ncert = \"missing.pem\"\nkey = \"missing.key\"\n[[listeners]]\nkind = \"starttls\"\naddress = \"[::1]:5222\"\n",
    )
    .unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.pem"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(&path, "[limits]\nmax_stanza_bytes = 10\n").unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("max_stanza_bytes"),
        "{}",
        text(&out.stderr)
    );

    std::fs::write(
        &path,
        "[[listeners]]\nkind = \"starttls\"\naddress = \"::1:5222\"\n",
    )
    .unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("invalid address"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn check_config_validates_proxy_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    let listener = "[[listeners]]\nkind = \"direct_tls\"\naddress = \"127.0.0.1:5223\"\n\
                    proxy_protocol = \"required\"\n";
    std::fs::write(
        &path,
        format!("{listener}proxy_trusted = [\"10.0.0.0/8\", \"::1\"]\n"),
    )
    .unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("PROXY protocol from 10.0.0.0/8 ::1"),
        "{}",
        text(&out.stdout)
    );

    std::fs::write(
        &path,
        format!("{listener}proxy_trusted = [\"10.0.0.1/8\"]\nproxy_header_timeout = \"0s\"\n"),
    )
    .unwrap();
    let out = run(&["check-config", path.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("`listeners[0].proxy_trusted`: \"10.0.0.1/8\"")
            && err.contains("`listeners[0].proxy_header_timeout`"),
        "{err}"
    );
}

#[test]
fn user_add_list_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let users_arg = users.to_str().unwrap();
    let add = |jid: &str, password: &str| {
        run(
            &[
                "user",
                "add",
                jid,
                "--password-stdin",
                "--iterations",
                "64",
                "--users",
                users_arg,
            ],
            password,
        )
    };
    assert!(add("alice@LOCALHOST", "correct horse\n").status.success());
    assert!(add("bob@localhost", "battery staple\n").status.success());
    let out = add("carol@elsewhere.example", "pw\n");
    assert!(out.status.success());
    assert!(
        text(&out.stderr).contains("not one of the served domains"),
        "{}",
        text(&out.stderr)
    );

    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let stored = std::fs::read_to_string(&users).unwrap();
    assert!(
        !stored.contains("correct horse") && !stored.contains("battery"),
        "{stored}"
    );
    assert!(
        stored.contains("stored_key") && stored.contains("server_key"),
        "{stored}"
    );

    let out = run(&["user", "list", "--users", users_arg], "");
    assert_eq!(
        text(&out.stdout),
        "alice@localhost\nbob@localhost\ncarol@elsewhere.example\n"
    );

    assert!(
        run(
            &["user", "remove", "bob@localhost", "--users", users_arg],
            ""
        )
        .status
        .success()
    );
    let out = run(
        &["user", "remove", "bob@localhost", "--users", users_arg],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["user", "list", "--users", users_arg], "");
    assert_eq!(
        text(&out.stdout),
        "alice@localhost\ncarol@elsewhere.example\n"
    );

    let file = edge::users::UsersFile::load(&users).unwrap().unwrap();
    let sha256 = &file.users["alice@localhost"].sha256;
    assert_eq!(sha256.iterations, 64);

    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let out = add("not-a-jid", "pw\n");
    assert_eq!(out.status.code(), Some(1));
    let out = add("dave@localhost", "\n");
    assert_eq!(out.status.code(), Some(1), "empty passwords are refused");
}

#[test]
fn user_add_range() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    let out = run(
        &[
            "user",
            "add-range",
            "load%d@localhost",
            "--from",
            "1",
            "--to",
            "50",
            "--password-stdin",
            "--iterations",
            "16",
            "--users",
            users.to_str().unwrap(),
        ],
        "pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = edge::users::UsersFile::load(&users).unwrap().unwrap();
    assert_eq!(file.users.len(), 50);
    assert!(
        file.users.contains_key("load1@localhost") && file.users.contains_key("load50@localhost")
    );
    // One derivation for the whole range: a load generator's salted-password cache hits
    // for every account.
    let salts: std::collections::HashSet<_> = file
        .users
        .values()
        .map(|user| user.sha256.salt.clone())
        .collect();
    assert_eq!(salts.len(), 1);
}

#[test]
fn user_commands_use_the_configured_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        "domains = [\"example.org\"]\nusers_file = \"accounts.toml\"\n",
    )
    .unwrap();
    let out = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "user",
            "add",
            "eve@example.org",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
    assert!(dir.path().join("accounts.toml").exists());
}
