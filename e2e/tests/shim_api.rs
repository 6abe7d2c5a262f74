//! Task API behaviours containerd's own client relies on, sent straight to the shim's ttrpc
//! socket (the requests `ctr` and CRI build never differ this way), on husk's shim and on
//! containerd's runc shim side by side: runc's shim is the reference.

use containerd_shim_protos::{api, ttrpc::Code};
use husk_e2e::bed::{TestBed, BUSYBOX};
use husk_e2e::shim_api::{code, exec_request, ShimClient};
use std::time::{Duration, Instant};

const HANDLERS: [&str; 2] = ["io.containerd.husk.v2", "io.containerd.runc.v2"];

fn short(rt: &str) -> &str {
    rt.split('.').nth(2).unwrap()
}

/// Starts `sleep` in a task of runtime `rt` and connects to its shim.
fn running_task(bed: &TestBed, rt: &str, id: &str) -> ShimClient {
    bed.ctr_ok(&["run", "-d", "--runtime", rt, BUSYBOX, id, "sleep", "1000"]);
    let t = Instant::now();
    while !bed
        .ctr_ok(&["task", "ls"])
        .lines()
        .any(|l| l.starts_with(&format!("{id} ")) && l.contains("RUNNING"))
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{id} never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    ShimClient::for_task(&bed.dir.path().join("state"), &bed.ns, id)
}

/// The task's process JSON from its bundle, running `args`, with `terminal` as given.
fn process(bed: &TestBed, id: &str, args: &[&str], terminal: bool) -> serde_json::Value {
    let bundle = husk_e2e::shim_api::bundle_dir(&bed.dir.path().join("state"), &bed.ns, id);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let mut p = spec["process"].clone();
    p["args"] = serde_json::json!(args);
    p["terminal"] = serde_json::json!(terminal);
    p
}

/// A FIFO the shim writes an exec's output into, read to end-of-file on a thread.
fn output_fifo(bed: &TestBed, name: &str) -> (String, std::sync::mpsc::Receiver<String>) {
    let path = bed.dir.path().join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            let _ = std::io::Read::read_to_string(&mut f, &mut s);
        }
        let _ = tx.send(s);
    });
    (path.display().to_string(), rx)
}

#[test]
fn exec_with_a_terminal_in_the_request_only_gets_a_terminal() {
    // containerd's client may set `terminal` on ExecProcessRequest while the process JSON
    // says none: the request wins (runc's shim copies it into the spec). husk used to wait in
    // accept() forever on a console socket nobody connected to.
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    for rt in HANDLERS {
        let id = format!("tty-{}", short(rt));
        let shim = running_task(&bed, rt, &id);
        let (stdout, out) = output_fifo(&bed, &format!("{id}.out"));
        let p = process(&bed, &id, &["sh", "-c", "tty; exit 4"], false);
        let req = exec_request(&id, "x", true, &stdout, &p);
        shim.call::<_, api::Empty>("Exec", &req)
            .unwrap_or_else(|e| panic!("{rt} Exec: {e}"));
        let start = api::StartRequest {
            id: id.clone(),
            exec_id: "x".into(),
            ..Default::default()
        };
        let started = shim.call::<_, api::StartResponse>("Start", &start);
        assert!(started.is_ok(), "{rt}: exec Start failed: {started:?}");
        let wait = api::WaitRequest {
            id: id.clone(),
            exec_id: "x".into(),
            ..Default::default()
        };
        let w: api::WaitResponse = shim.call("Wait", &wait).unwrap();
        assert_eq!(w.exit_status, 4, "{rt}");
        let del = api::DeleteRequest {
            id: id.clone(),
            exec_id: "x".into(),
            ..Default::default()
        };
        shim.call::<_, api::DeleteResponse>("Delete", &del).unwrap();
        let text = out.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(text.starts_with("/dev/pts/"), "{rt}: {text:?}");
        bed.ctr_ok(&["task", "kill", "-s", "SIGKILL", &id]);
    }
}

#[test]
fn resize_pty_of_a_process_without_a_terminal_succeeds() {
    // runc's shim answers ResizePty on a process without a terminal with success (a no-op);
    // clients that resize unconditionally depend on it.
    let bed = TestBed::start();
    bed.import(BUSYBOX);
    let mut seen = Vec::new();
    for rt in HANDLERS {
        let id = format!("rs-{}", short(rt));
        let shim = running_task(&bed, rt, &id);
        let init = api::ResizePtyRequest {
            id: id.clone(),
            width: 80,
            height: 25,
            ..Default::default()
        };
        let r = shim.call::<_, api::Empty>("ResizePty", &init);
        seen.push((rt, "init", code(&r)));
        let p = process(&bed, &id, &["sleep", "1000"], false);
        shim.call::<_, api::Empty>("Exec", &exec_request(&id, "e", false, "", &p))
            .unwrap();
        let start = api::StartRequest {
            id: id.clone(),
            exec_id: "e".into(),
            ..Default::default()
        };
        shim.call::<_, api::StartResponse>("Start", &start).unwrap();
        let exec = api::ResizePtyRequest {
            exec_id: "e".into(),
            ..init
        };
        let r = shim.call::<_, api::Empty>("ResizePty", &exec);
        seen.push((rt, "exec", code(&r)));
        bed.ctr_ok(&["task", "kill", "--all", "-s", "SIGKILL", &id]);
    }
    for (rt, what, c) in &seen {
        assert_eq!(*c, Code::OK, "{rt} ResizePty of the {what}: {seen:?}");
    }
}
