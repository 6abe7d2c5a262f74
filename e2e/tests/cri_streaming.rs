//! Exec and Attach through containerd's streaming server, as `kubectl exec` / `kubectl attach`
//! reach them, on both handlers: with and without a terminal, with stdin.

use husk_e2e::bed::BUSYBOX;
use husk_e2e::cri::v1 as cri;
use husk_e2e::stream::{stream, Streamed};
use husk_e2e::suite::{log_text, on_both, Pod};

fn exec_url(c: &mut husk_e2e::cri::Cri, id: &str, cmd: &[&str], tty: bool) -> String {
    let req = cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin: true,
        stdout: true,
        stderr: !tty,
    };
    c.call(|mut r| async move { r.exec(req).await })
        .expect("Exec")
        .url
}

#[test]
fn exec_with_and_without_a_terminal() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let pod = Pod::run(bed, c, handler, "exec", |_| {});
        let id = pod.start(c, "main", BUSYBOX, &["sleep", "1000"], |_| {});
        let url = exec_url(
            c,
            &id,
            &["sh", "-c", "read l; echo out:$l; echo err:$l >&2; exit 3"],
            false,
        );
        let plain = stream(&url, None, b"hello\n").unwrap();
        let url = exec_url(c, &id, &["sh", "-c", "read l; tty; echo tty:$l"], true);
        let tty = stream(&url, None, b"typed\n").unwrap();
        c.stop_container(&id, 1);
        pod.remove(c);
        (plain, tty)
    });
    assert_eq!(
        seen.0,
        Streamed {
            stdout: "out:hello\n".into(),
            stderr: "err:hello\n".into(),
            exit_code: Some(3)
        }
    );
    let t = &seen.1;
    assert_eq!(t.exit_code, Some(0), "{t:?}");
    // The terminal echoes what was typed, and turns \n into \r\n.
    assert_eq!(t.stdout, "typed\r\n/dev/pts/0\r\ntty:typed\r\n", "{t:?}");
}

#[test]
fn attach_to_stdin_with_and_without_a_terminal() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let mut out = Vec::new();
        for tty in [false, true] {
            let pod = Pod::run(bed, c, handler, &format!("attach-{tty}"), |_| {});
            let id = pod.start(
                c,
                "main",
                BUSYBOX,
                &["sh", "-c", "read l; echo attached:$l; echo to-err >&2"],
                |cfg| {
                    cfg.stdin = true;
                    cfg.stdin_once = true;
                    cfg.tty = tty;
                },
            );
            let req = cri::AttachRequest {
                container_id: id.clone(),
                stdin: true,
                tty,
                stdout: true,
                stderr: !tty,
            };
            let url = c
                .call(|mut r| async move { r.attach(req).await })
                .expect("Attach")
                .url;
            let got = stream(&url, None, b"hi\n").unwrap();
            let st = c.wait_exited(&id);
            let log = log_text(&pod.log("main"), "stdout");
            pod.remove(c);
            out.push((got.stdout, got.stderr, st.exit_code, log));
        }
        out
    });
    assert_eq!(
        seen[0],
        (
            "attached:hi\n".to_string(),
            "to-err\n".to_string(),
            0,
            "attached:hi\n".to_string()
        )
    );
    assert!(seen[1].0.contains("attached:hi\r\n"), "{seen:?}");
    assert_eq!(seen[1].2, 0);
}
