//! Keeping the shim's resident set to what it actually uses.
//!
//! A shim lives as long as its pod, one per pod, so its resident set is paid once per pod. Most
//! of it is text of this binary and of the shared libraries, and most of *that* was never
//! executed: on a read fault the kernel maps the neighbouring page-cache pages too ("fault
//! around", 64 KiB), and the start-up paths (argument parsing, spec translation, the first
//! create) touch code the idle shim never runs again. Once the shim has been idle a moment we
//! drop the page-table entries of its clean, read-only file mappings (the pages stay in the
//! page cache, shared with every other shim); what it runs later faults back in, 64 KiB at a
//! time (MADV_RANDOM does not stop fault-around, measured). No crate does this; it is one
//! madvise call per mapping.

use std::time::Duration;
use tokio::sync::Notify;

/// How long the shim must be quiet before its resident set is trimmed: long enough that a
/// pod's create+start burst is over and its blocking threads have exited.
pub const QUIET: Duration = Duration::from_millis(1500);

static ACTIVITY: Notify = Notify::const_new();

/// Marks the shim busy (a create, start, exec, delete or stats call just ran); the trim waits
/// for quiet.
pub fn touch() {
    ACTIVITY.notify_one();
}

/// Trims after every busy period, once the shim has been quiet for [`QUIET`].
pub fn spawn_trimmer() {
    tokio::spawn(async {
        loop {
            ACTIVITY.notified().await;
            while tokio::time::timeout(QUIET, ACTIVITY.notified())
                .await
                .is_ok()
            {}
            // Logged before the trim, so the logging code is not faulted straight back in.
            tracing::debug!("trimming resident text");
            if let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") {
                trim(&smaps);
            }
            // And the heap's free pages (a create's spec, a stats reply...): glibc returns
            // whole free pages anywhere in the heap to the kernel, not only its top.
            // SAFETY: malloc_trim only releases memory malloc holds free.
            #[cfg(target_env = "gnu")]
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
}

/// A mapping whose resident pages can be dropped and faulted back from the file unchanged.
#[derive(Debug, PartialEq)]
struct Droppable {
    start: usize,
    len: usize,
    rss_kib: u64,
}

/// The clean read-only private file mappings of an smaps text. A mapping with any anonymous
/// (copy-on-write) page is left alone: that is relocated data (RELRO) made read-only after
/// the dynamic loader wrote it, and dropping it would bring back the unrelocated bytes.
fn droppable(smaps: &str) -> Vec<Droppable> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None; // start, len, eligible
    let mut rss = 0u64;
    for line in smaps.lines() {
        let mut fields = line.split_ascii_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            else {
                current = None;
                continue;
            };
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            let eligible = path.starts_with('/')
                && perms.len() == 4
                && &perms[1..2] == "-"
                && perms.ends_with('p');
            current = Some((lo, hi - lo, eligible));
            rss = 0;
            continue;
        }
        let Some((start, len, eligible)) = current else {
            continue;
        };
        let value = fields
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        match first {
            "Rss:" => rss = value,
            "Anonymous:" if value > 0 => current = Some((start, len, false)),
            // VmFlags is the last line of each mapping's block.
            "VmFlags:" => {
                // `lo`: mlocked, `io`/`pf`: device memory; never touch those.
                let special = line
                    .split_ascii_whitespace()
                    .any(|f| matches!(f, "lo" | "io" | "pf"));
                if eligible && !special && rss > 0 {
                    out.push(Droppable {
                        start,
                        len,
                        rss_kib: rss,
                    });
                }
                current = None;
            }
            _ => {}
        }
    }
    out
}

/// Drops the resident pages of the droppable mappings; returns the bytes dropped.
fn trim(smaps: &str) -> u64 {
    let mut dropped = 0;
    for m in droppable(smaps) {
        let addr = m.start as *mut libc::c_void;
        // SAFETY: the range is a whole private read-only file mapping of this process without
        // anonymous pages: after MADV_DONTNEED its pages fault back from the file, identical.
        if unsafe { libc::madvise(addr, m.len, libc::MADV_DONTNEED) } == 0 {
            dropped += m.rss_kib * 1024;
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0134000 r--p 00000000 fe:00 5311423                    /usr/bin/containerd-shim-husk-v2
Size:               1232 kB
Rss:                 696 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
55d0a0134000-55d0a04bc000 r-xp 00134000 fe:00 5311423                    /usr/bin/containerd-shim-husk-v2
Size:               3616 kB
Rss:                2748 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
55d0a04bc000-55d0a050a000 r--p 004bb000 fe:00 5311423                    /usr/bin/containerd-shim-husk-v2
Size:                312 kB
Rss:                 312 kB
Anonymous:           312 kB
VmFlags: rd mr mw me ac sd
55d0a050a000-55d0a050c000 rw-p 00508000 fe:00 5311423                    /usr/bin/containerd-shim-husk-v2
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
VmFlags: rd wr mr mw me ac sd
55d0a1000000-55d0a1042000 rw-p 00000000 00:00 0                          [heap]
Size:                264 kB
Rss:                 136 kB
Anonymous:           136 kB
VmFlags: rd wr mr mw me ac sd
7f0000000000-7f0000010000 r-xp 00000000 fe:00 77                         /usr/lib/locked.so
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me lo sd
7f0000010000-7f0000020000 r--s 00000000 fe:00 78                         /dev/shm/shared
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
7f0000020000-7f0000030000 r--p 00000000 fe:00 79                         /usr/lib/cold.so
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
VmFlags: rd mr mw me sd
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
Size:                  8 kB
Rss:                   4 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me de sd
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_dropped() {
        assert_eq!(
            droppable(SMAPS),
            vec![
                Droppable {
                    start: 0x55d0a0000000,
                    len: 0x134000,
                    rss_kib: 696
                },
                Droppable {
                    start: 0x55d0a0134000,
                    len: 0x388000,
                    rss_kib: 2748
                },
            ]
        );
    }

    #[test]
    fn trimming_this_process_keeps_it_working() {
        // The test binary's real mappings: after the trim its code still runs and its
        // read-only data reads back the same, and the resident text went down.
        let rss = |s: &str| droppable(s).iter().map(|m| m.rss_kib).sum::<u64>();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(rss(&smaps) > 0, "nothing droppable in {smaps}");
        let text_before = SMAPS.to_string();
        assert!(trim(&smaps) > 0);
        assert_eq!(SMAPS, text_before);
        assert_eq!(droppable(SMAPS).len(), 2);
        let after = std::fs::read_to_string("/proc/self/smaps").unwrap();
        assert!(
            rss(&after) < rss(&smaps),
            "{} kB -> {} kB",
            rss(&smaps),
            rss(&after)
        );
    }
}
