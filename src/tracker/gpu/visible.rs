//! `CUDA_VISIBLE_DEVICES`, read the way CUDA reads it: which of the devices NVML lists the
//! server sees.

/// One entry of `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum VisibleEntry {
    /// A CUDA ordinal (taken as the NVML index; see `docs/design/gpu.md` on device order).
    Index(u32),
    /// A `GPU-…` UUID or unique prefix of one.
    Uuid(String),
    /// A MIG instance (`MIG-…`): memory is not split per instance here.
    Mig(String),
    /// Anything else (`-1`, a typo): CUDA stops reading the list at such an entry.
    Invalid(String),
}

/// Parses `CUDA_VISIBLE_DEVICES`. `None` (unset) means every device; `Some(vec![])` none.
pub(super) fn parse_visible_devices(value: Option<&str>) -> Option<Vec<VisibleEntry>> {
    let value = value?;
    let entries = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            if let Ok(i) = e.parse::<u32>() {
                VisibleEntry::Index(i)
            } else if e.len() > 4 && e[..4].eq_ignore_ascii_case("GPU-") {
                VisibleEntry::Uuid(e.to_ascii_lowercase())
            } else if e.len() > 4 && e[..4].eq_ignore_ascii_case("MIG-") {
                VisibleEntry::Mig(e.to_string())
            } else {
                VisibleEntry::Invalid(e.to_string())
            }
        })
        .collect();
    Some(entries)
}

/// Resolves the entries against the devices NVML lists (`(index, uuid)`), in CUDA's way: an
/// entry that names no device ends the list (CUDA ignores it and every later one), duplicates
/// are dropped. Returns the NVML indices to watch and notes for a person.
pub(super) fn resolve_visible(
    entries: Option<&[VisibleEntry]>,
    devices: &[(u32, String)],
) -> (Vec<u32>, Vec<String>) {
    let Some(entries) = entries else {
        return (devices.iter().map(|(i, _)| *i).collect(), Vec::new());
    };
    let mut picked = Vec::new();
    let mut notes = Vec::new();
    for entry in entries {
        let found = match entry {
            VisibleEntry::Index(i) => devices
                .iter()
                .find(|(idx, _)| idx == i)
                .map(|(idx, _)| *idx),
            VisibleEntry::Uuid(prefix) => {
                let mut hits = devices
                    .iter()
                    .filter(|(_, u)| u.to_ascii_lowercase().starts_with(prefix.as_str()));
                match (hits.next(), hits.next()) {
                    (Some((idx, _)), None) => Some(*idx),
                    (Some(_), Some(_)) => {
                        notes.push(format!(
                            "CUDA_VISIBLE_DEVICES entry {prefix} matches several GPUs"
                        ));
                        None
                    }
                    _ => None,
                }
            }
            VisibleEntry::Mig(id) => {
                // CUDA accepts it, so the list goes on; we cannot attribute memory per instance.
                notes.push(format!(
                    "MIG instance {id} in CUDA_VISIBLE_DEVICES is not tracked"
                ));
                continue;
            }
            VisibleEntry::Invalid(_) => None,
        };
        match found {
            Some(idx) if !picked.contains(&idx) => picked.push(idx),
            Some(_) => {}
            None => {
                let shown = match entry {
                    VisibleEntry::Index(i) => i.to_string(),
                    VisibleEntry::Uuid(s) | VisibleEntry::Mig(s) | VisibleEntry::Invalid(s) => {
                        s.clone()
                    }
                };
                notes.push(format!(
                    "CUDA_VISIBLE_DEVICES entry {shown} names no GPU; CUDA ignores it and every later entry"
                ));
                break;
            }
        }
    }
    (picked, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_devices_unset_means_all_and_empty_means_none() {
        let devs = vec![(0, "GPU-aaaa".to_string()), (1, "GPU-bbbb".to_string())];
        assert_eq!(parse_visible_devices(None), None);
        assert_eq!(resolve_visible(None, &devs).0, vec![0, 1]);
        let empty = parse_visible_devices(Some("")).unwrap();
        assert!(empty.is_empty());
        assert_eq!(resolve_visible(Some(&empty), &devs).0, Vec::<u32>::new());
    }

    #[test]
    fn visible_devices_take_indices_and_uuid_prefixes_in_order() {
        let devs = vec![
            (0, "GPU-8e87ab62-6104-a659-4583-a742265dfd08".to_string()),
            (1, "GPU-1234abcd-0000-0000-0000-000000000000".to_string()),
        ];
        let e = parse_visible_devices(Some(" 1 , GPU-8E87")).unwrap();
        assert_eq!(
            e,
            vec![
                VisibleEntry::Index(1),
                VisibleEntry::Uuid("gpu-8e87".into())
            ]
        );
        let (picked, notes) = resolve_visible(Some(&e), &devs);
        assert_eq!(picked, vec![1, 0]);
        assert!(notes.is_empty());
        // Duplicates collapse.
        let e =
            parse_visible_devices(Some("0,0,GPU-8e87ab62-6104-a659-4583-a742265dfd08")).unwrap();
        assert_eq!(resolve_visible(Some(&e), &devs).0, vec![0]);
    }

    #[test]
    fn visible_devices_stop_at_an_entry_that_names_no_gpu() {
        let devs = vec![(0, "GPU-aaaa".to_string()), (1, "GPU-bbbb".to_string())];
        let e = parse_visible_devices(Some("1,7,0")).unwrap();
        let (picked, notes) = resolve_visible(Some(&e), &devs);
        assert_eq!(picked, vec![1]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains('7'), "{notes:?}");
        // The usual "hide all GPUs" idiom.
        let e = parse_visible_devices(Some("-1")).unwrap();
        assert_eq!(e, vec![VisibleEntry::Invalid("-1".into())]);
        assert!(resolve_visible(Some(&e), &devs).0.is_empty());
        // An unknown UUID also ends the list.
        let e = parse_visible_devices(Some("GPU-ffff,0")).unwrap();
        assert!(resolve_visible(Some(&e), &devs).0.is_empty());
    }

    #[test]
    fn visible_devices_note_mig_and_ambiguous_prefixes() {
        let devs = vec![(0, "GPU-ab01".to_string()), (1, "GPU-ab02".to_string())];
        let e = parse_visible_devices(Some("MIG-5c2a1e8b-0000,GPU-ab,1")).unwrap();
        assert!(matches!(e[0], VisibleEntry::Mig(_)));
        let (picked, notes) = resolve_visible(Some(&e), &devs);
        assert!(picked.is_empty(), "{picked:?}");
        assert!(notes.iter().any(|n| n.contains("MIG")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("several")), "{notes:?}");
    }
}
