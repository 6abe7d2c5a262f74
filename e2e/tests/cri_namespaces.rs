//! Namespaces and networking through CRI on both handlers: host/pod/container PID, IPC and
//! network namespaces, several containers of one pod sharing network and PIDs, DNS config,
//! hostPort mapping to a web server, and host networking.

use husk_e2e::bed::{BUSYBOX, WEB};
use husk_e2e::cri::v1 as cri;
use husk_e2e::suite::{http_get, log_text, on_both, pod_security, run_to_exit, security, Pod};
use std::time::Duration;

fn ns_of(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

fn modes(
    pid: cri::NamespaceMode,
    ipc: cri::NamespaceMode,
    net: cri::NamespaceMode,
) -> cri::NamespaceOption {
    cri::NamespaceOption {
        pid: pid as i32,
        ipc: ipc as i32,
        network: net as i32,
        ..Default::default()
    }
}

#[test]
fn host_pod_and_container_pid_ipc_and_network_namespaces() {
    use cri::NamespaceMode::{Container, Node, Pod as PodMode};
    let host = (ns_of("pid"), ns_of("ipc"), ns_of("net"));
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        let script =
            "echo pid $(readlink /proc/self/ns/pid); echo ipc $(readlink /proc/self/ns/ipc); \
             echo net $(readlink /proc/self/ns/net); echo init $(tr '\\0' ' ' < /proc/1/cmdline)";
        let mut out = Vec::new();
        for (name, pod_ns, ctr_pid) in [
            ("host", modes(Node, Node, Node), Node),
            ("shared", modes(PodMode, PodMode, PodMode), PodMode),
            ("private", modes(Container, PodMode, PodMode), Container),
        ] {
            let pod_ns2 = pod_ns.clone();
            let host_net = pod_ns.network == Node as i32;
            let r = run_to_exit(
                bed,
                c,
                handler,
                &format!("ns-{name}"),
                BUSYBOX,
                &["sh", "-c", script],
                |p| {
                    // kubelet sends no hostname for host-network pods (no UTS namespace).
                    if host_net {
                        p.hostname.clear();
                    }
                    pod_security(|s| s.namespace_options = Some(pod_ns))(p)
                },
                security(|s| {
                    s.namespace_options = Some(cri::NamespaceOption {
                        pid: ctr_pid as i32,
                        ..pod_ns2
                    })
                }),
            );
            let field = |k: &str| {
                r.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k} ")))
                    .unwrap_or("")
                    .to_string()
            };
            out.push((
                name,
                field("pid") == host.0,
                field("ipc") == host.1,
                field("net") == host.2,
                field("init").trim().to_string(),
            ));
        }
        out
    });
    let init = |i: usize| seen[i].4.clone();
    assert!(
        seen[0].1 && seen[0].2 && seen[0].3,
        "host namespaces: {seen:?}"
    );
    assert!(
        !seen[1].1 && !seen[1].2 && !seen[1].3,
        "pod namespaces: {seen:?}"
    );
    assert_eq!(
        init(1),
        "/pause",
        "a shared PID namespace has the sandbox as PID 1"
    );
    assert!(init(2).starts_with("sh -c"), "own PID namespace: {seen:?}");
    assert!(!seen[2].1, "{seen:?}");
}

#[test]
fn containers_of_one_pod_share_network_and_pids() {
    let seen = on_both(&[BUSYBOX, WEB], |bed, c, handler| {
        let pod = Pod::run(
            bed,
            c,
            handler,
            "shared",
            pod_security(|s| {
                s.namespace_options = Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                })
            }),
        );
        let share_pid = security(|s| {
            s.namespace_options = Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            })
        });
        let web = pod.start(
            c,
            "web",
            WEB,
            &["httpd", "-f", "-p", "127.0.0.1:8081", "-h", "/www"],
            share_pid,
        );
        let share_pid = security(|s| {
            s.namespace_options = Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Pod as i32,
                ..Default::default()
            })
        });
        let client = pod.start(
            c,
            "client",
            BUSYBOX,
            &[
                "sh",
                "-c",
                "for i in $(seq 100); do wget -q -O- http://127.0.0.1:8081/ && break; sleep 0.1; done; \
                 ps -o args | grep -c '^httpd -f'",
            ],
            share_pid,
        );
        let st = c.wait_exited(&client);
        let out = log_text(&pod.log("client"), "stdout");
        c.stop_container(&web, 1);
        pod.remove(c);
        (st.exit_code, out)
    });
    assert_eq!(seen, (0, "hello from a husk web server\n1\n".to_string()));
}

#[test]
fn dns_config_becomes_resolv_conf() {
    let seen = on_both(&[BUSYBOX], |bed, c, handler| {
        run_to_exit(
            bed,
            c,
            handler,
            "dns",
            BUSYBOX,
            &["cat", "/etc/resolv.conf"],
            |p| {
                p.dns_config = Some(cri::DnsConfig {
                    servers: vec!["10.96.0.10".into()],
                    searches: vec!["ns1.svc.cluster.local".into(), "svc.cluster.local".into()],
                    options: vec!["ndots:5".into()],
                })
            },
            |_| {},
        )
        .stdout
    });
    assert!(seen.contains("nameserver 10.96.0.10\n"), "{seen}");
    assert!(
        seen.contains("search ns1.svc.cluster.local svc.cluster.local\n"),
        "{seen}"
    );
    assert!(seen.contains("options ndots:5\n"), "{seen}");
}

/// A host port no other test bed running at the same time picks.
fn host_port(bed: &husk_e2e::TestBed, handler: &str) -> u16 {
    let octet: u16 = bed.gateway.split('.').nth(2).unwrap().parse().unwrap();
    let second: u16 = bed.gateway.split('.').nth(1).unwrap().parse().unwrap();
    30000 + (second % 100) * 250 + octet + if handler == "husk" { 12500 } else { 0 }
}

#[test]
fn host_port_mapping_reaches_a_web_server() {
    let seen = on_both(&[WEB], |bed, c, handler| {
        let port = host_port(bed, handler);
        let pod = Pod::run(bed, c, handler, "web", |p| {
            p.port_mappings = vec![cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 8080,
                host_port: port as i32,
                host_ip: String::new(),
            }]
        });
        let ip = c.pod_status(&pod.id).network.map(|n| n.ip).unwrap();
        let id = pod.start(c, "web", WEB, &[], |_| {});
        let direct = http_get(&format!("{ip}:8080"), Duration::from_secs(10));
        let mapped = http_get(&format!("{}:{port}", bed.gateway), Duration::from_secs(10));
        c.stop_container(&id, 1);
        pod.remove(c);
        // The mapping is gone with the pod.
        let after = http_get(
            &format!("{}:{port}", bed.gateway),
            Duration::from_millis(500),
        );
        (direct, mapped, after.is_err())
    });
    let body = Ok("hello from a husk web server\n".to_string());
    assert_eq!(seen, (body.clone(), body, true));
}

#[test]
fn host_network_pod_serves_on_the_hosts_loopback() {
    let seen = on_both(&[WEB], |bed, c, handler| {
        let port = host_port(bed, handler) + 1;
        let pod = Pod::run(bed, c, handler, "hostnet", |p| {
            p.hostname.clear();
            pod_security(|s| {
                s.namespace_options = Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                })
            })(p)
        });
        let addr = format!("127.0.0.1:{port}");
        let id = pod.start(
            c,
            "web",
            WEB,
            &["httpd", "-f", "-p", &addr, "-h", "/www"],
            |_| {},
        );
        let got = http_get(&addr, Duration::from_secs(10));
        let ip = c
            .pod_status(&pod.id)
            .network
            .map(|n| n.ip)
            .unwrap_or_default();
        c.stop_container(&id, 1);
        pod.remove(c);
        (got, ip.is_empty() || !ip.starts_with("10.1"))
    });
    assert_eq!(
        seen,
        (Ok("hello from a husk web server\n".to_string()), true)
    );
}
