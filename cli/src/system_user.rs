//! Users as the system knows them (`getent passwd`: local files, LDAP, SSSD alike), never
//! as a recording says: a job directory's owner is the job's user.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// One entry of the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user with this uid, if the system has one (looked up once per process).
pub fn by_uid(uid: u32) -> Option<SystemUser> {
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<SystemUser>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().ok().and_then(|c| c.get(&uid).cloned()) {
        return found;
    }
    let found = getent(&uid.to_string()).filter(|u| u.uid == uid);
    if let Ok(mut c) = cache.lock() {
        c.insert(uid, found.clone());
    }
    found
}

/// The user named `name`, if the system has one.
pub fn by_name(name: &str) -> Option<SystemUser> {
    // A number would be looked up as a uid.
    if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    getent(name).filter(|u| u.name == name)
}

/// The name a uid is shown and filed under: the system's name, or the number itself.
pub fn name_of(uid: u32) -> String {
    by_uid(uid).map_or_else(|| uid.to_string(), |u| u.name)
}

/// Tests give their made-up users in a passwd-format file (`AIPM_TEST_PASSWD`, honoured
/// in debug builds only: an installed, release binary asks the system alone).
fn getent(key: &str) -> Option<SystemUser> {
    #[cfg(debug_assertions)]
    if let Some(file) = std::env::var_os("AIPM_TEST_PASSWD") {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(parse_passwd_line)
            .find(|u| u.name == key || u.uid.to_string() == key);
        if found.is_some() {
            return found;
        }
    }
    let out = Command::new("getent")
        .args(["passwd", "--", key])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    parse_passwd_line(String::from_utf8_lossy(&out.stdout).lines().next()?)
}

/// `name:x:uid:gid:gecos:home:shell`.
fn parse_passwd_line(line: &str) -> Option<SystemUser> {
    let mut fields = line.split(':');
    let name = fields.next()?.to_string();
    let _password = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some(SystemUser { name, uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines() {
        assert_eq!(
            parse_passwd_line("alice:x:1001:100:Alice:/home/alice:/bin/bash"),
            Some(SystemUser {
                name: "alice".into(),
                uid: 1001,
                gid: 100
            })
        );
        assert_eq!(parse_passwd_line("garbage"), None);
    }

    #[test]
    fn root_is_known_and_a_made_up_uid_is_its_number() {
        assert_eq!(by_uid(0).map(|u| u.name), Some("root".into()));
        assert_eq!(by_name("root").map(|u| u.uid), Some(0));
        assert_eq!(name_of(3_999_999_999), "3999999999");
        assert_eq!(by_name("0"), None);
    }
}
