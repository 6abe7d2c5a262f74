//! The shim's output path: what a container writes to its stdout pipe is copied to the sink
//! containerd gave (a FIFO its CRI turns into log lines, or a file:// log). husk writes no CRI
//! log lines itself — containerd does — so the property is that the bytes arrive exactly:
//! whatever the content and however the writes are split, the sink holds the same bytes, in
//! order, once the copy reports it is over.
#![no_main]

use arbitrary::Arbitrary;
use containerd_shim_husk_v2::io;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Input {
    /// A FIFO (containerd's CRI) or a file:// log.
    fifo: bool,
    /// Sizes of the writes the container makes (cycled; 0 means one byte).
    splits: Vec<u16>,
    data: Vec<u8>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn dir() -> &'static std::path::Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

fuzz_target!(|input: Input| {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = dir().join(format!("out-{}", N.fetch_add(1, Ordering::Relaxed)));
    let owner = io::Owner {
        id: "c".into(),
        namespace: "n".into(),
    };
    let uri = if input.fifo {
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        path.to_str().unwrap().to_string()
    } else {
        format!("file://{}", path.display())
    };
    // containerd's end of the FIFO, opened before the shim's (as containerd does). It is read
    // from once the shim has opened its end: a FIFO read with no writer yet would end at once.
    let reader = input.fifo.then(|| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap()
    });
    let got = runtime().block_on(async {
        let mut pio = io::setup("", &uri, "", &owner).expect("stdio set-up");
        let reader = reader.map(|f| {
            // SAFETY: fcntl on an fd this File owns.
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETFL, 0) };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut f = f;
                f.read_to_end(&mut got).unwrap();
                got
            })
        });
        let w = pio.stdout.take().expect("a stdout pipe");
        let progress = pio.progress();
        drop(pio);
        let (data, splits) = (input.data.clone(), input.splits.clone());
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(w);
            let mut rest = &data[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = splits
                    .get(i % splits.len().max(1))
                    .map_or(rest.len(), |&s| usize::from(s).max(1))
                    .min(rest.len());
                f.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
                i += 1;
            }
        });
        io::flushed(progress.clone()).await;
        writer.join().unwrap();
        // The copy ends only once the source is drained: wait for that, not for a stall.
        for mut rx in progress {
            while rx.changed().await.is_ok() {}
        }
        reader
    });
    let out = match got {
        Some(r) => r.join().unwrap(),
        None => std::fs::read(&path).unwrap(),
    };
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.len(), input.data.len(), "bytes lost or added");
    assert!(out == input.data, "bytes changed on the way");
});
