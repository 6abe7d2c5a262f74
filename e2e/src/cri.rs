//! A CRI v1 client speaking to the test bed's containerd exactly as kubelet does (gRPC over
//! the unix socket), with blocking helpers for the tests.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1;

pub struct Cri {
    rt: tokio::runtime::Runtime,
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    /// Every call fails with `DeadlineExceeded` once this has passed (unset: calls wait as
    /// long as containerd takes), so a test of a wedged runtime fails instead of hanging.
    deadline: Option<Duration>,
}

impl Cri {
    /// Connects to containerd's CRI socket and waits for the plugin; panics on failure.
    pub fn connect(socket: &Path) -> Cri {
        Self::try_connect(socket).expect("connect to containerd's CRI socket")
    }

    /// [`Cri::connect`] that reports a failure instead of panicking (for teardown paths,
    /// where a second panic would abort the whole test binary).
    pub fn try_connect(socket: &Path) -> Result<Cri, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let p = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                tokio::net::UnixStream::connect(p).await?,
                            ))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("connect to {}: {e}", socket.display()))?;
        let mut c = Cri {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            deadline: None,
        };
        c.wait_initialized();
        Ok(c)
    }

    /// Waits (at most 60 s) until containerd's CRI plugin has initialized: right after a
    /// (re)start its socket answers "server is not initialized yet" for a moment.
    fn wait_initialized(&mut self) {
        let t = std::time::Instant::now();
        loop {
            let req = cri::StatusRequest { verbose: false };
            match self.call(|mut c| async move { c.status(req).await }) {
                Err(e)
                    if e.message().contains("not initialized")
                        && t.elapsed() < std::time::Duration::from_secs(60) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                _ => return,
            }
        }
    }

    /// Bounds every later call by `limit` ([`Cri::call_within`]); `None` lifts the bound.
    pub fn set_deadline(&mut self, limit: Option<Duration>) {
        self.deadline = limit;
    }

    /// Runs one CRI call to completion (or to the deadline set by [`Cri::set_deadline`]).
    pub fn call<F, T>(
        &mut self,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        if let Some(limit) = self.deadline {
            return self.call_within(limit, f);
        }
        let c = self.runtime.clone();
        self.rt.block_on(f(c)).map(|r| r.into_inner())
    }

    /// Runs one CRI call, giving up after `limit` (a soak must not hang on one stuck call):
    /// a timeout is `DeadlineExceeded`.
    pub fn call_within<F, T>(
        &mut self,
        limit: Duration,
        f: impl FnOnce(RuntimeServiceClient<Channel>) -> F,
    ) -> Result<T, tonic::Status>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = self.runtime.clone();
        let call = f(c);
        match self
            .rt
            .block_on(async move { tokio::time::timeout(limit, call).await })
        {
            Ok(r) => r.map(|r| r.into_inner()),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {limit:?}"
            ))),
        }
    }

    /// The containers of pod `pod` (every state).
    pub fn list_containers(&mut self, pod: &str) -> Vec<cri::Container> {
        let req = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.into(),
                ..Default::default()
            }),
        };
        self.call(|mut c| async move { c.list_containers(req).await })
            .expect("ListContainers")
            .containers
    }

    pub fn pod_config(name: &str, log_dir: &Path) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "husk-e2e".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn run_pod(&mut self, config: &cri::PodSandboxConfig, handler: &str) -> String {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        self.call(|mut c| async move { c.run_pod_sandbox(req).await })
            .expect("RunPodSandbox")
            .pod_sandbox_id
    }

    pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(cri::LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    pub fn create_container(
        &mut self,
        pod: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let req = create_request(pod, config, pod_config);
        self.call(|mut c| async move { c.create_container(req).await })
            .map(|r| r.container_id)
    }

    /// [`Cri::create_container`], bounded by `limit`.
    pub fn create_container_within(
        &mut self,
        limit: Duration,
        pod: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        let req = create_request(pod, config, pod_config);
        self.call_within(limit, |mut c| async move { c.create_container(req).await })
            .map(|r| r.container_id)
    }

    pub fn start_container(&mut self, id: &str) -> Result<(), tonic::Status> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.call(|mut c| async move { c.start_container(req).await })
            .map(|_| ())
    }

    pub fn container_status(&mut self, id: &str) -> cri::ContainerStatus {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call(|mut c| async move { c.container_status(req).await })
            .expect("ContainerStatus")
            .status
            .expect("status")
    }

    /// The host pid of a running container's process (containerd's verbose status `info`).
    pub fn container_pid(&mut self, id: &str) -> i32 {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let info = self
            .call(|mut c| async move { c.container_status(req).await })
            .expect("ContainerStatus")
            .info;
        let v: serde_json::Value =
            serde_json::from_str(info.get("info").expect("verbose status has info")).unwrap();
        v["pid"].as_i64().expect("info.pid") as i32
    }

    /// CRI Status: the runtime handlers and their features (containerd 2.x fills them).
    pub fn runtime_handlers(&mut self) -> Vec<cri::RuntimeHandler> {
        let req = cri::StatusRequest { verbose: false };
        self.call(|mut c| async move { c.status(req).await })
            .expect("Status")
            .runtime_handlers
    }

    /// Waits until the container has exited (at most 120 s: the node guest emulates its CPU);
    /// its final status.
    pub fn wait_exited(&mut self, id: &str) -> cri::ContainerStatus {
        let t = Instant::now();
        loop {
            let st = self.container_status(id);
            if st.state == cri::ContainerState::ContainerExited as i32
                || t.elapsed() > Duration::from_secs(120)
            {
                return st;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn exec_sync(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_secs,
        };
        self.call(|mut c| async move { c.exec_sync(req).await })
    }

    pub fn stop_container(&mut self, id: &str, timeout: i64) {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.call(|mut c| async move { c.stop_container(req).await })
            .expect("StopContainer");
    }

    pub fn remove_container(&mut self, id: &str) {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.call(|mut c| async move { c.remove_container(req).await })
            .expect("RemoveContainer");
    }

    pub fn pod_status(&mut self, id: &str) -> cri::PodSandboxStatus {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: false,
        };
        self.call(|mut c| async move { c.pod_sandbox_status(req).await })
            .expect("PodSandboxStatus")
            .status
            .expect("status")
    }

    pub fn stop_pod(&mut self, id: &str) {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut c| async move { c.stop_pod_sandbox(req).await })
            .expect("StopPodSandbox");
    }

    pub fn remove_pod(&mut self, id: &str) {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.call(|mut c| async move { c.remove_pod_sandbox(req).await })
            .expect("RemovePodSandbox");
    }

    pub fn list_pods(&mut self, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let req = cri::ListPodSandboxRequest { filter };
        self.call(|mut c| async move { c.list_pod_sandbox(req).await })
            .expect("ListPodSandbox")
            .items
    }
}

fn create_request(
    pod: &str,
    config: &cri::ContainerConfig,
    pod_config: &cri::PodSandboxConfig,
) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(config.clone()),
        sandbox_config: Some(pod_config.clone()),
    }
}
