//! The exactly-once monitor's default identity on a host: `HOST-N`, held by a lock file.

/// A default instance id, stable per host and process slot: `HOST-N`, where N is the lowest
/// slot no other monitor of the group on this host holds. The slot is held by an exclusive
/// lock on a file in the temporary directory for as long as the returned [`InstanceSlot`]
/// lives; the kernel drops the lock when the process dies, so a monitor restarted after a
/// crash takes the same slot (and so fences its predecessor's open transaction).
#[derive(Debug)]
pub struct InstanceSlot {
    id: String,
    _lock: std::fs::File,
}

impl InstanceSlot {
    /// Claims the lowest free slot of `group` on this host.
    ///
    /// # Errors
    ///
    /// When the lock files cannot be created.
    pub fn claim(group: &str) -> std::io::Result<InstanceSlot> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "localhost".to_owned());
        let dir = std::env::temp_dir().join("velib-monitor-slots");
        std::fs::create_dir_all(&dir)?;
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        for slot in 0.. {
            let path = dir.join(format!("{safe}-{slot}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {
                    return Ok(InstanceSlot {
                        id: format!("{host}-{slot}"),
                        _lock: file,
                    });
                }
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        unreachable!("a slot is free below usize::MAX")
    }

    /// The instance id: `HOST-N`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_monitors_of_one_group_on_a_host_get_two_slots_and_a_freed_slot_is_taken_again() {
        let group = format!("slot-test-{}", std::process::id());
        let a = InstanceSlot::claim(&group).unwrap();
        let b = InstanceSlot::claim(&group).unwrap();
        assert_ne!(a.id(), b.id());
        let a_id = a.id().to_owned();
        drop(a);
        let c = InstanceSlot::claim(&group).unwrap();
        assert_eq!(c.id(), a_id);
    }
}
