//! Container stdio. The container writes into pipes the shim holds; the shim copies them to
//! containerd's FIFOs (or a file://, or a binary:// logger). Holding the pipes means output is
//! never lost when the container writes fast and exits at once, and the FIFOs are opened
//! read-write so a containerd restart makes writes wait instead of failing.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

fn set_nonblock(fd: &impl AsRawFd) {
    // SAFETY: fcntl on a valid fd.
    unsafe {
        let f = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, f | libc::O_NONBLOCK);
    }
}

pub fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

fn open_path(path: &str, flags: i32) -> std::io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o640) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Where a stream goes on the shim's side.
#[derive(Debug)]
pub enum Sink {
    None,
    Fifo(String),
    File(String),
    /// A logging binary that gets stdout on fd 3, stderr on fd 4, and signals readiness on fd 5.
    Binary {
        path: String,
        args: Vec<String>,
    },
}

pub fn parse_uri(s: &str) -> Result<Sink, String> {
    if s.is_empty() {
        return Ok(Sink::None);
    }
    if let Some(rest) = s.strip_prefix("file://") {
        return Ok(Sink::File(rest.to_string()));
    }
    if let Some(rest) = s.strip_prefix("fifo://") {
        return Ok(Sink::Fifo(rest.to_string()));
    }
    if let Some(rest) = s
        .strip_prefix("binary://")
        .or_else(|| s.strip_prefix("binary-v2://"))
    {
        // binary:///path/to/logger?key=value&flag → logger key value flag ""
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = unescape(path, false).ok_or_else(|| format!("{s}: bad %-escape in the path"))?;
        return Ok(Sink::Binary {
            path,
            args: logger_args(query),
        });
    }
    if s.contains("://") {
        return Err(format!("{s}: unsupported io scheme"));
    }
    Ok(Sink::Fifo(s.to_string()))
}

/// Percent-decoding as Go's net/url does it for containerd: `%XX` everywhere, and `+` as a
/// space in a query. `None` for a malformed escape.
fn unescape(s: &str, query: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A `binary://` logger's arguments, as containerd's runc shim derives them from the query
/// (Go's url.Query): each key once, followed by its first value (empty if it has none);
/// `&`-separated pairs, empty ones and ones with a `;` or a malformed escape skipped.
/// Go iterates its map in random order; husk keeps the order of first appearance.
fn logger_args(query: &str) -> Vec<String> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for kv in query
        .split('&')
        .filter(|x| !x.is_empty() && !x.contains(';'))
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let (Some(k), Some(v)) = (unescape(k, true), unescape(v, true)) else {
            continue;
        };
        if !pairs.iter().any(|(seen, _)| *seen == k) {
            pairs.push((k, v));
        }
    }
    pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()
}

/// How long the shim waits for the reader of an output FIFO to open it before opening its own
/// end anyway. containerd opens its readers before it sends the request, so normally there is
/// no wait at all; the bound is for a FIFO nobody reads.
pub const FIFO_READER_WAIT: Duration = Duration::from_secs(1);

/// Opens output FIFO `p` for writing, once its reader has opened it (or after `wait`).
///
/// containerd opens its reader with a *blocking* open(2), on a goroutine, possibly after the
/// request reached the shim (containerd/fifo drops O_NONBLOCK), and a blocking reader's open
/// waits for a writer to arrive after it (fifo(7); `wait_for_partner` in fs/pipe.c). An exec
/// that prints nothing on a stream and exits at once had its FIFO opened and closed by the
/// shim before that open: containerd never saw the writer, its copy of the stream never ended,
/// and the ExecSync waiting for it hung until its timeout, leaving containerd holding the
/// FIFO's fd for good (found by the soak: about 1 exec in 6,000). So the shim first opens
/// O_WRONLY|O_NONBLOCK, which fails with ENXIO until a reader is there and, once it succeeds,
/// is the writer that reader sees arrive. The handle kept is O_RDWR: never ENXIO, never EPIPE
/// while containerd is away (a restart).
fn open_fifo_writer(p: &str, wait: Duration) -> std::io::Result<OwnedFd> {
    let t = Instant::now();
    let announced = loop {
        match open_path(p, libc::O_WRONLY | libc::O_NONBLOCK) {
            Ok(fd) => break Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if t.elapsed() >= wait {
                    tracing::warn!(
                        fifo = p,
                        "no reader opened this FIFO; writing into it anyway"
                    );
                    break None;
                }
                // A blocking wait on a tokio worker, bounded and normally zero (see above).
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    };
    let fd = open_path(p, libc::O_RDWR | libc::O_NONBLOCK)?;
    drop(announced);
    Ok(fd)
}

fn open_sink(sink: &Sink) -> std::io::Result<Option<OwnedFd>> {
    match sink {
        Sink::None | Sink::Binary { .. } => Ok(None),
        Sink::Fifo(p) => open_fifo_writer(p, FIFO_READER_WAIT).map(Some),
        Sink::File(p) => {
            if let Some(dir) = Path::new(p).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            open_path(p, libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT).map(Some)
        }
    }
}

/// A read buffer that exists only while data flows. A copy task lives as long as its
/// container and spends nearly all of it waiting on a quiet pipe: holding a 64 KiB buffer
/// through that wait cost 64 KiB of heap per stream per container (128 KiB for a container
/// with stdout and stderr, found with heaptrack on an idle shim). The buffer is taken when the
/// source turns readable and dropped once a read finds the pipe drained.
struct BurstBuf {
    buf: Option<Vec<u8>>,
    size: usize,
}

impl BurstBuf {
    fn new(size: usize) -> Self {
        BurstBuf { buf: None, size }
    }

    /// The next bytes of `src`; empty at end-of-file.
    async fn read(&mut self, src: &AsyncFd<OwnedFd>) -> std::io::Result<&[u8]> {
        let size = self.size;
        loop {
            let mut g = src.readable().await?;
            let buf = self.buf.get_or_insert_with(|| vec![0u8; size]);
            match g.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from))
            {
                Ok(r) => {
                    let n = r?;
                    return Ok(&self.buf.as_deref().unwrap_or(&[])[..n]);
                }
                Err(_would_block) => self.buf = None,
            }
        }
    }

    /// Reads a blocking source (a regular file) into a buffer kept until the copy ends.
    fn read_blocking(&mut self, src: &OwnedFd) -> std::io::Result<&[u8]> {
        let size = self.size;
        let buf = self.buf.get_or_insert_with(|| vec![0u8; size]);
        let n = nix::unistd::read(src, buf).map_err(std::io::Error::from)?;
        Ok(&buf[..n])
    }
}

async fn write_all(dst: &Dst, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let n = match dst {
            Dst::Async(a) | Dst::Fifo(a) => {
                let mut g = a.writable().await?;
                match g.try_io(|fd| {
                    nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)
                }) {
                    Ok(r) => r?,
                    Err(_would_block) => continue,
                }
            }
            Dst::Blocking(f) => nix::unistd::write(f, data).map_err(std::io::Error::from)?,
        };
        data = &data[n..];
    }
    Ok(())
}

enum Dst {
    Async(AsyncFd<OwnedFd>),
    /// A FIFO: polled like any pipe, and waited on until its reader took everything.
    Fifo(AsyncFd<OwnedFd>),
    /// Regular files cannot be polled; writes to them do not block for long.
    Blocking(OwnedFd),
}

fn dst_of(fd: OwnedFd) -> std::io::Result<Dst> {
    set_nonblock(&fd);
    let kind = nix::sys::stat::fstat(fd.as_fd())
        .map(|s| s.st_mode & libc::S_IFMT)
        .unwrap_or(0);
    Ok(match kind {
        libc::S_IFREG => Dst::Blocking(fd),
        libc::S_IFIFO => Dst::Fifo(crate::io::async_fd(fd)?),
        _ => Dst::Async(crate::io::async_fd(fd)?),
    })
}

/// How long output may stall (nothing read from the container, nothing taken from a FIFO by
/// its reader) before the shim stops holding a process's exit back for it: a background
/// process can keep a pipe open forever, and a reader can go away.
pub const FLUSH_IDLE: Duration = Duration::from_secs(2);

/// A running copy of one output stream (the task runs detached: a copy that stalls past
/// `FLUSH_IDLE` still delivers whatever comes later).
pub struct Copier {
    /// Ticks whenever output moves; closed once the copy is over (source at EOF, and every
    /// FIFO emptied by its reader).
    pub progress: watch::Receiver<u64>,
}

/// Bytes written into a pipe or FIFO that its reader has not taken yet.
fn unread(fd: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores an int through a valid pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return 0;
    }
    n.max(0) as usize
}

/// Waits until the reader of `fifo` has taken everything written into it, or stalls.
async fn wait_taken(fifo: &impl AsRawFd, progress: &watch::Sender<u64>) {
    let (mut last, mut since) = (usize::MAX, Instant::now());
    loop {
        let n = unread(fifo);
        if n == 0 {
            return;
        }
        if n < last {
            (last, since) = (n, Instant::now());
            progress.send_modify(|v| *v += 1);
        } else if since.elapsed() >= FLUSH_IDLE {
            tracing::warn!(
                unread = n,
                "FIFO reader stalled; closing with output unread"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Copies `src` to every destination until EOF (or EIO from a pty whose slave closed), then
/// waits for FIFO readers to take the rest before closing them. containerd 1.6's CRI closes
/// its end of the FIFOs soon after it sees the exit, so output still queued in a FIFO then is
/// lost (with runc too); the exit is reported only after this copy is over (see `flushed`).
pub fn spawn_copy(src: OwnedFd, dsts: Vec<OwnedFd>) -> Copier {
    let (tx, progress) = watch::channel(0u64);
    tokio::spawn(async move {
        set_nonblock(&src);
        let src = match crate::io::async_fd(src) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "stdio source");
                return;
            }
        };
        let dsts: Vec<Dst> = dsts.into_iter().filter_map(|d| dst_of(d).ok()).collect();
        let mut buf = BurstBuf::new(64 * 1024);
        let mut total = 0u64;
        loop {
            let data = match buf.read(&src).await {
                Ok([]) => break,
                Ok(data) => data,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "stdio read");
                    break;
                }
            };
            for d in &dsts {
                if let Err(e) = write_all(d, data).await {
                    tracing::warn!(error = %e, "stdio write");
                }
            }
            total += data.len() as u64;
            tx.send_replace(total);
        }
        for d in &dsts {
            if let Dst::Fifo(f) = d {
                wait_taken(f.get_ref(), &tx).await;
            }
        }
    });
    Copier { progress }
}

/// Resolves when every copy is over, or when output has stalled for `FLUSH_IDLE`.
pub async fn flushed(mut progress: Vec<watch::Receiver<u64>>) {
    for rx in &mut progress {
        loop {
            match tokio::time::timeout(FLUSH_IDLE, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_closed)) => break,
                Err(_stalled) => return,
            }
        }
    }
}

/// One process's stdio, as the shim holds it.
#[derive(Default)]
pub struct ProcessIo {
    /// What the container process gets as fds 0, 1, 2.
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub copiers: Vec<Copier>,
    /// The copy of containerd's stdin FIFO into the process.
    stdin_copy: Option<StdinCopy>,
}

/// The shim's side of a stdin FIFO: a reader the copy drains, and a write handle of the
/// shim's own so the FIFO never reads as end-of-file while containerd's writer comes and goes
/// (a restart of containerd). CloseIO closes only that handle: the copy then runs on until
/// every writer has closed and the FIFO is empty, so every byte written before CloseIO reaches
/// the process; then the process's stdin is closed. (Dropping the copy at CloseIO lost what was
/// still in the FIFO.)
struct StdinCopy {
    own_writer: Option<OwnedFd>,
    task: tokio::task::AbortHandle,
}

impl ProcessIo {
    /// Progress of this process's output copies, to hold its exit back until they are over.
    pub fn progress(&self) -> Vec<watch::Receiver<u64>> {
        self.copiers.iter().map(|c| c.progress.clone()).collect()
    }

    /// CloseIO on stdin: the process reads end-of-file once everything written so far has
    /// been copied and containerd's writer is closed too.
    pub fn close_stdin(&mut self) {
        if let Some(c) = &mut self.stdin_copy {
            c.own_writer = None;
        }
    }
}

impl Drop for ProcessIo {
    /// The process is deleted: nobody reads its stdin any more.
    fn drop(&mut self) {
        if let Some(c) = &self.stdin_copy {
            c.task.abort();
        }
    }
}

/// Opens containerd's stdin FIFO (reader first, then the shim's own writer: a FIFO opened for
/// writing without blocking needs a reader) and starts copying it into `dst`.
fn copy_stdin_from(path: &str, dst: OwnedFd) -> Result<StdinCopy, String> {
    let src = open_path(path, libc::O_RDONLY | libc::O_NONBLOCK)
        .map_err(|e| format!("open stdin {path}: {e}"))?;
    let is_fifo = nix::sys::stat::fstat(src.as_fd())
        .map(|s| s.st_mode & libc::S_IFMT == libc::S_IFIFO)
        .unwrap_or(false);
    let own_writer = if is_fifo {
        Some(
            open_path(path, libc::O_WRONLY | libc::O_NONBLOCK)
                .map_err(|e| format!("open stdin {path} for writing: {e}"))?,
        )
    } else {
        None
    };
    Ok(StdinCopy {
        own_writer,
        task: spawn_stdin(src, dst),
    })
}
/// Sets up pipes and copiers for the non-terminal case.
pub fn setup(stdin: &str, stdout: &str, stderr: &str, owner: &Owner) -> Result<ProcessIo, String> {
    let mut io = ProcessIo::default();
    let devnull =
        || open_path("/dev/null", libc::O_RDWR).map_err(|e| format!("open /dev/null: {e}"));
    let out_sink = parse_uri(stdout)?;
    let err_sink = parse_uri(stderr)?;
    if let Sink::Binary { path, args } = &out_sink {
        let (out, err) = start_logger(path, args, owner, LOGGER_READY_WAIT)?;
        io.stdout = Some(out);
        io.stderr = Some(err);
    }
    for (sink, slot, name) in [(out_sink, 1, stdout), (err_sink, 2, stderr)] {
        if matches!(sink, Sink::Binary { .. }) {
            continue;
        }
        let fd = match open_sink(&sink).map_err(|e| format!("open {name}: {e}"))? {
            None => devnull()?,
            Some(dst) => {
                let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
                io.copiers.push(spawn_copy(r, vec![dst]));
                w
            }
        };
        if slot == 1 {
            io.stdout = Some(fd);
        } else {
            io.stderr = Some(fd);
        }
    }
    match parse_uri(stdin)? {
        Sink::None => io.stdin = Some(devnull()?),
        Sink::Binary { .. } => return Err(format!("{stdin}: a logger cannot be stdin")),
        Sink::Fifo(p) | Sink::File(p) => {
            let (r, w) = pipe().map_err(|e| format!("pipe: {e}"))?;
            io.stdin_copy = Some(copy_stdin_from(&p, w)?);
            io.stdin = Some(r);
        }
    }
    Ok(io)
}

/// Copies `src` (containerd's stdin FIFO) into `dst` (the process's stdin pipe, or its pty
/// master) until end-of-file, then closes `dst`. Async and abortable: a process that never
/// reads its stdin holds no thread.
fn spawn_stdin(src: OwnedFd, dst: OwnedFd) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let src = match Src::of(src) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "stdin source");
                return;
            }
        };
        set_nonblock(&dst);
        let dst = match crate::io::async_fd(dst) {
            Ok(d) => Dst::Async(d),
            Err(e) => {
                tracing::warn!(error = %e, "stdin destination");
                return;
            }
        };
        let mut buf = BurstBuf::new(32 * 1024);
        loop {
            let data = match src.read(&mut buf).await {
                Ok([]) => break,
                Ok(data) => data,
                Err(e) => {
                    tracing::warn!(error = %e, "stdin read");
                    break;
                }
            };
            // EPIPE: the process closed its stdin (or exited); the rest has nowhere to go.
            if write_all(&dst, data).await.is_err() {
                break;
            }
        }
    })
    .abort_handle()
}

/// A stdin source: a FIFO (polled) or a regular file (file://; reads do not block for long).
enum Src {
    Async(AsyncFd<OwnedFd>),
    Blocking(OwnedFd),
}

impl Src {
    fn of(fd: OwnedFd) -> std::io::Result<Src> {
        let regular = nix::sys::stat::fstat(fd.as_fd())
            .map(|s| s.st_mode & libc::S_IFMT == libc::S_IFREG)
            .unwrap_or(false);
        if regular {
            return Ok(Src::Blocking(fd));
        }
        set_nonblock(&fd);
        crate::io::async_fd(fd).map(Src::Async)
    }

    async fn read<'b>(&self, buf: &'b mut BurstBuf) -> std::io::Result<&'b [u8]> {
        match self {
            Src::Async(a) => buf.read(a).await,
            Src::Blocking(f) => buf.read_blocking(f),
        }
    }
}

/// How long a `binary://` logger may take to signal readiness.
pub const LOGGER_READY_WAIT: Duration = Duration::from_secs(10);

/// Whose stdio this is (a logger binary is told).
pub struct Owner {
    pub id: String,
    pub namespace: String,
}

/// Starts a `binary://` logger and waits until it says it is ready. Returns the write ends the
/// container gets as stdout and stderr; the logger reads them directly.
fn start_logger(
    path: &str,
    args: &[String],
    owner: &Owner,
    within: Duration,
) -> Result<(OwnedFd, OwnedFd), String> {
    use std::os::unix::process::CommandExt;
    let (out_r, out_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let (ready_r, ready_w) = pipe().map_err(|e| format!("pipe: {e}"))?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", &owner.id)
        .env("CONTAINER_NAMESPACE", &owner.namespace)
        .stdin(std::process::Stdio::null());
    // SAFETY: only dup2/fcntl between fork and exec. The sources are CLOEXEC and above 5 or
    // moved there first, so the dup2 chain cannot clobber a source.
    unsafe {
        cmd.pre_exec(move || {
            let mut src = fds;
            for s in src.iter_mut() {
                if *s < 6 {
                    let d = libc::fcntl(*s, libc::F_DUPFD_CLOEXEC, 6);
                    if d < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    *s = d;
                }
            }
            for (i, s) in src.iter().enumerate() {
                if libc::dup2(*s, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = {
        let _g = crate::reaper::spawn_guard();
        cmd.spawn()
            .map_err(|e| format!("start logger {path}: {e}"))?
    };
    drop((out_r, err_r, ready_w));
    // Ready: a byte (binary-v2) or the logger closing fd 5 (binary). Bounded: a logger that
    // never says so is an error, and is killed (the orphan reaper reaps it).
    let mut p = libc::pollfd {
        fd: ready_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = Instant::now() + within;
    let ready = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_micros().div_ceil(1000) as libc::c_int;
        // SAFETY: poll on one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, ms) } {
            r if r > 0 => break true,
            r if r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ if Instant::now() < deadline => {}
            _ => break false,
        }
    };
    if !ready {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        return Err(format!(
            "logger {path} did not signal readiness within {within:?}"
        ));
    }
    let mut b = [0u8; 1];
    let _ = nix::unistd::read(&ready_r, &mut b);
    tracing::debug!(id = %owner.id, logger = path, pid = child.id(), "logger ready");
    Ok((out_w, err_w))
}

/// Terminal mode: the pty master replaces the pipes.
pub fn setup_terminal(master: OwnedFd, stdin: &str, stdout: &str) -> Result<ProcessIo, String> {
    let mut io = ProcessIo::default();
    if let Some(dst) = open_sink(&parse_uri(stdout)?).map_err(|e| format!("open {stdout}: {e}"))? {
        let reader = master.try_clone().map_err(|e| e.to_string())?;
        io.copiers.push(spawn_copy(reader, vec![dst]));
    }
    match parse_uri(stdin)? {
        Sink::None => {}
        Sink::Binary { .. } => return Err(format!("{stdin}: a logger cannot be stdin")),
        Sink::Fifo(p) | Sink::File(p) => {
            let writer = master.try_clone().map_err(|e| e.to_string())?;
            io.stdin_copy = Some(copy_stdin_from(&p, writer)?);
        }
    }
    Ok(io)
}

/// Registers an owned fd with the reactor.
pub fn async_fd(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the fd, so it stays open exactly as long as it is registered.
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(matches!(parse_uri("").unwrap(), Sink::None));
        assert!(
            matches!(parse_uri("/run/x/stdout").unwrap(), Sink::Fifo(p) if p == "/run/x/stdout")
        );
        assert!(
            matches!(parse_uri("file:///var/log/c.log").unwrap(), Sink::File(p) if p == "/var/log/c.log")
        );
        assert!(
            matches!(parse_uri("binary:///usr/bin/logger?tag=web&verbose").unwrap(), Sink::Binary { path, args } if path == "/usr/bin/logger" && args == ["tag", "web", "verbose", ""])
        );
        assert!(parse_uri("tcp://x").is_err());
    }

    /// Found by the `shim_args` fuzz target: the logger's arguments were taken from the raw
    /// query (no %-decoding, empty values dropped, repeated keys repeated), unlike
    /// containerd's runc shim, which the logger binaries are written against.
    #[test]
    fn logger_query_is_decoded_like_containerd() {
        let args = |uri: &str| match parse_uri(uri).unwrap() {
            Sink::Binary { path, args } => (path, args),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            args(
                "binary:///opt/my%20logger?tag=a%26b&msg=hello+world&=v&k&&x;y=1&tag=again&bad=%zz"
            ),
            (
                "/opt/my logger".to_string(),
                ["tag", "a&b", "msg", "hello world", "", "v", "k", ""]
                    .map(String::from)
                    .to_vec()
            )
        );
        assert!(parse_uri("binary:///opt/log%2").is_err());
    }

    #[test]
    fn binary_logger_gets_the_streams_and_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("log");
        let logger = dir.path().join("logger.sh");
        std::fs::write(&logger, format!("#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $1\" > {0}\ncat <&3 >> {0}\ncat <&4 >> {0}\n", out.display())).unwrap();
        std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let uri = format!("binary://{}?mode", logger.display());
        let io = setup(
            "",
            &uri,
            &uri,
            &Owner {
                id: "c1".into(),
                namespace: "ns".into(),
            },
        )
        .unwrap();
        assert!(io.copiers.is_empty(), "the logger reads the pipes itself");
        nix::unistd::write(io.stdout.as_ref().unwrap(), b"out\n").unwrap();
        nix::unistd::write(io.stderr.as_ref().unwrap(), b"err\n").unwrap();
        drop(io);
        for _ in 0..200 {
            if std::fs::read_to_string(&out)
                .unwrap_or_default()
                .ends_with("err\n")
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "ns/c1 mode\nout\nerr\n"
        );
    }

    fn close_stdin(io: &mut ProcessIo) {
        io.close_stdin();
    }

    /// IO with only stdout, going to `uri`; the write end of the container's stdout pipe.
    fn stdout_to(uri: &str) -> (ProcessIo, OwnedFd) {
        let owner = Owner {
            id: "c".into(),
            namespace: "n".into(),
        };
        let mut io = setup("", uri, "", &owner).unwrap();
        let w = io.stdout.take().unwrap();
        (io, w)
    }

    /// A process writing `data` to `w` from its own thread, then exiting.
    fn write_in_thread(w: OwnedFd, data: Vec<u8>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(w);
            std::io::Write::write_all(&mut f, &data).unwrap();
        })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn fast_writer_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.log");
        let (io, w) = stdout_to(&format!("file://{}", out.display()));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = write_in_thread(w, data.clone());
        // The copier runs on this thread while the writer fills the pipe from another.
        let progress = io.progress();
        flushed(progress.clone()).await;
        writer.join().unwrap();
        assert_eq!(*progress[0].borrow(), data.len() as u64);
        assert_eq!(std::fs::read(&out).unwrap(), data);
    }

    /// An idle container's copy task must not hold its 64 KiB buffer: taken when data comes,
    /// dropped once a read finds the pipe empty (heaptrack showed it held for the container's
    /// life before).
    #[tokio::test(flavor = "current_thread")]
    async fn a_copy_holds_its_read_buffer_only_while_data_flows() {
        let (r, w) = pipe().unwrap();
        set_nonblock(&r);
        let r = async_fd(r).unwrap();
        let mut buf = BurstBuf::new(64 * 1024);
        assert!(buf.buf.is_none(), "a buffer before any data");
        nix::unistd::write(&w, b"hello").unwrap();
        assert_eq!(buf.read(&r).await.unwrap(), b"hello");
        assert_eq!(buf.buf.as_ref().map(Vec::len), Some(64 * 1024));
        let quiet = tokio::time::timeout(Duration::from_millis(50), buf.read(&r)).await;
        assert!(quiet.is_err(), "a read of an empty pipe returned");
        assert!(
            buf.buf.is_none(),
            "the buffer is kept while the pipe is quiet"
        );
        nix::unistd::write(&w, b"again").unwrap();
        assert_eq!(buf.read(&r).await.unwrap(), b"again");
        drop(w);
        assert_eq!(buf.read(&r).await.unwrap(), b"");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn copy_is_over_only_once_the_fifo_reader_took_everything() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        const N: usize = 32 << 10; // fits in the FIFO: only the reader can hold the copy up
        const READER_LATE: Duration = Duration::from_millis(500);
        let path = fifo.clone();
        // containerd's side: opens at once, starts reading late, reads until EOF.
        let reader = std::thread::spawn(move || {
            let mut f = std::fs::File::open(path).unwrap();
            std::thread::sleep(READER_LATE);
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut got).unwrap();
            got.len()
        });
        let (io, w) = stdout_to(fifo.to_str().unwrap());
        let t = Instant::now();
        // The process writes and exits; its output waits in the FIFO.
        write_in_thread(w, vec![b'x'; N]);
        flushed(io.progress()).await;
        assert!(
            t.elapsed() >= READER_LATE,
            "the copy was over before the reader took anything"
        );
        assert_eq!(reader.join().unwrap(), N);
    }

    #[test]
    fn a_reader_that_opens_late_sees_the_end_of_a_silent_stream() {
        // containerd's reader: a blocking open(2) on a thread of its own that runs late, then
        // a read to end-of-file. The shim opens the FIFO for a stream that gets no output (an
        // exec printing nothing on stderr) and closes it at once: the reader must still see
        // end-of-file, not wait forever in open(2) for a writer that has come and gone.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stderr");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut f = std::fs::File::open(path).unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut got).unwrap();
            let _ = tx.send(got.len());
        });
        let fd = open_sink(&Sink::Fifo(fifo.display().to_string()))
            .unwrap()
            .unwrap();
        drop(fd);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(0),
            "the reader never saw the end of the stream"
        );
    }

    #[test]
    fn a_fifo_nobody_reads_is_opened_after_a_bounded_wait() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let t = Instant::now();
        let fd = open_fifo_writer(fifo.to_str().unwrap(), Duration::from_millis(50)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        // Writable without a reader (the handle is O_RDWR): no EPIPE, no ENXIO.
        assert_eq!(nix::unistd::write(&fd, b"x"), Ok(1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_byte_written_to_stdin_before_close_io_reaches_the_process() {
        // A client writes into the stdin FIFO, then closes its end and sends CloseIO (ctr
        // sends CloseIO first and closes right after: both orders). Nothing may be lost.
        let owner = Owner {
            id: "c".into(),
            namespace: "n".into(),
        };
        for round in 0..16usize {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("stdin");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let mut io = setup(fifo.to_str().unwrap(), "", "", &owner).unwrap();
            let container_stdin = std::fs::File::from(io.stdin.take().unwrap());
            // Fits in the FIFO: the client's writes never wait for the copy.
            let data: Vec<u8> = (0..(round + 1) * 3000).map(|i| (i % 253) as u8).collect();
            let mut client = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            std::io::Write::write_all(&mut client, &data).unwrap();
            if round % 2 == 0 {
                drop(client);
                close_stdin(&mut io);
            } else {
                close_stdin(&mut io);
                drop(client);
            }
            let got = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::task::spawn_blocking(move || {
                    let mut got = Vec::new();
                    std::io::Read::read_to_end(&mut &container_stdin, &mut got).map(|_| got)
                }),
            )
            .await
            .expect("the process's stdin reached end-of-file")
            .unwrap()
            .unwrap();
            assert_eq!(got.len(), data.len(), "round {round}: bytes lost");
            assert_eq!(got, data);
        }
    }

    #[test]
    fn a_logger_that_never_signals_readiness_is_an_error_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let logger = dir.path().join("logger.sh");
        let pidfile = dir.path().join("pid");
        std::fs::write(
            &logger,
            format!(
                "#!/bin/sh\necho $$ > {}\nexec sleep 1000\n",
                pidfile.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&logger, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let owner = Owner {
            id: "c".into(),
            namespace: "n".into(),
        };
        let t = Instant::now();
        let e = start_logger(
            logger.to_str().unwrap(),
            &[],
            &owner,
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(e.contains("did not signal readiness"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed: gone or a zombie left to the reaper.
        let t = Instant::now();
        loop {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if st.is_empty() || st.contains("State:\tZ") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "logger still running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
