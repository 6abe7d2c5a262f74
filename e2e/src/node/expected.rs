//! Expected failures of the guest stage: scenarios husk is known to fail on a systemd +
//! cgroup v2 node until the work of issue 12 lands, listed in `expected-failures.txt` beside
//! this file. They still run and are printed with their first lines; they do not fail the
//! stage, so the stage guards everything else (every runc result, every scenario husk passes).
//! An entry is strict: it excuses only a failure in which the reference handler passed and
//! husk's error contains the given text, and an entry that excuses nothing in a cell it applies
//! to fails the stage (remove it: husk got better).
//!
//! Line format (`#` starts a comment):
//! `[cell name contains] binary::test glob — husk's error contains`

/// One entry.
#[derive(Debug, Clone)]
pub struct Expected {
    pub cell: String,
    pub test: String,
    pub error: String,
    /// Line number in the file, for messages.
    pub line: usize,
}

/// The entries of the list compiled into this binary.
pub fn list() -> Vec<Expected> {
    parse(include_str!("expected-failures.txt")).expect("e2e/src/node/expected-failures.txt")
}

pub fn parse(text: &str) -> Result<Vec<Expected>, String> {
    let mut v = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = || {
            format!(
                "line {}: expected `[cell] binary::test — error`: {raw}",
                i + 1
            )
        };
        let rest = l.strip_prefix('[').ok_or_else(err)?;
        let (cell, rest) = rest.split_once(']').ok_or_else(err)?;
        let (test, error) = rest.split_once('—').ok_or_else(err)?;
        v.push(Expected {
            cell: cell.trim().into(),
            test: test.trim().into(),
            error: error.trim().into(),
            line: i + 1,
        });
    }
    Ok(v)
}

/// `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(p) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

impl Expected {
    pub fn applies_to(&self, cell: &str) -> bool {
        cell.contains(&self.cell)
    }

    /// Whether this entry excuses `test` (`binary::test`) failing with `message` in `cell`,
    /// whose reference handler is `reference` (`None`: a single-runtime cell, which must be
    /// husk's). The reference must have passed: a runc failure is never excused.
    pub fn excuses(&self, cell: &str, test: &str, message: &str, reference: Option<&str>) -> bool {
        let reference_passed = match reference {
            Some(r) => message.contains(&format!("{r}: passed")),
            None => true,
        };
        self.applies_to(cell)
            && glob(&self.test, test)
            && message.contains(&self.error)
            && message.contains("husk")
            && reference_passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("cri*::*", "cri_storage::many_pods_at_once"));
        assert!(glob("cri::pod_*", "cri::pod_sandbox_lifecycle"));
        assert!(!glob("cri::pod_*", "cri_security::pod_x"));
        assert!(glob("ctr_shim::x", "ctr_shim::x"));
    }

    #[test]
    fn the_reference_must_have_passed() {
        let e = &parse("[systemd driver] cri*::* — not supported yet").unwrap()[0];
        let cell = "CRI suite | containerd 1.7 | systemd driver | runc,husk";
        let ok = "handlers failed (runc then husk):\nrunc: passed\nhusk: FAILED: not supported yet";
        let runc_failed =
            "handlers failed (runc then husk):\nrunc: FAILED: x\nhusk: FAILED: not supported yet";
        assert!(e.excuses(cell, "cri::a", ok, Some("runc")));
        assert!(!e.excuses(cell, "cri::a", runc_failed, Some("runc")));
        assert!(!e.excuses(
            "CRI suite | containerd 1.7 | cgroupfs driver",
            "cri::a",
            ok,
            Some("runc")
        ));
    }

    #[test]
    fn the_list_parses() {
        list();
    }
}
