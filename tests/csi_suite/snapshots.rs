//! CSI snapshots, written from the spec's CreateSnapshot, DeleteSnapshot, ListSnapshots
//! and CreateVolume (`volume_content_source`) sections: required fields first
//! (INVALID_ARGUMENT), unknown sources NOT_FOUND, a name taken by another source
//! ALREADY_EXISTS, a volume smaller than its source OUT_OF_RANGE, paging with
//! `starting_token`/`max_entries` (a token not ours ABORTED), filters by snapshot and
//! source id (an unknown id lists nothing), deletion idempotent, snapshots outliving
//! their source. Needs an env whose default class has a thin pool and a class `plain`
//! without one.

use super::{code, req, Env};
use lvmd::csi::pb::volume_content_source::{SnapshotSource, Type, VolumeSource};
use lvmd::csi::pb::*;
use tonic::Code;

const MIB: i64 = 1 << 20;

fn snap_req(name: &str, source: &str) -> CreateSnapshotRequest {
    CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        secrets: Default::default(),
        parameters: Default::default(),
    }
}

fn list_req(max: i32, token: &str, source: &str, snapshot: &str) -> ListSnapshotsRequest {
    ListSnapshotsRequest {
        max_entries: max,
        starting_token: token.into(),
        source_volume_id: source.into(),
        snapshot_id: snapshot.into(),
        secrets: Default::default(),
    }
}

fn from(kind: &str, id: &str) -> VolumeContentSource {
    VolumeContentSource {
        r#type: Some(match kind {
            "snapshot" => Type::Snapshot(SnapshotSource {
                snapshot_id: id.into(),
            }),
            _ => Type::Volume(VolumeSource {
                volume_id: id.into(),
            }),
        }),
    }
}

pub fn snapshot_rules(e: &Env) {
    let caps =
        e.rt.block_on(
            e.ctl()
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {}),
        )
        .unwrap()
        .into_inner()
        .capabilities;
    use controller_service_capability::{rpc::Type as T, Type as CapType};
    let has = |t: T| {
        caps.iter()
            .any(|c| matches!(&c.r#type, Some(CapType::Rpc(r)) if r.r#type == t as i32))
    };
    assert!(has(T::CreateDeleteSnapshot) && has(T::ListSnapshots) && has(T::CloneVolume));

    let a = e.create(req("pvc-a", 64 * MIB, &[])).unwrap();
    let b = e.create(req("pvc-b", 32 * MIB, &[])).unwrap();
    let create = |r: CreateSnapshotRequest| {
        e.rt.block_on(e.ctl().create_snapshot(r))
            .map(|r| r.into_inner().snapshot.unwrap())
    };
    let list = |r: ListSnapshotsRequest| {
        e.rt.block_on(e.ctl().list_snapshots(r))
            .map(|r| r.into_inner())
    };
    let delete = |id: &str| {
        e.rt.block_on(e.ctl().delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: id.into(),
            secrets: Default::default(),
        }))
        .map(|_| ())
    };

    // Required fields first, before any lookup; then the source.
    for (r, c) in [
        (snap_req("", "x"), Code::InvalidArgument),
        (snap_req("snap-1", ""), Code::InvalidArgument),
        (snap_req("snap-1", "not-an-id"), Code::NotFound),
        (
            snap_req("snap-1", &a.volume_id.replace("pvc-a", "pvc-gone")),
            Code::NotFound,
        ),
    ] {
        let s = code(create(r.clone()));
        assert_eq!(s.code(), c, "{r:?}: {s:?}");
    }
    let mut with_params = snap_req("snap-1", &a.volume_id);
    with_params.parameters.insert("x".into(), "y".into());
    assert_eq!(code(create(with_params)).code(), Code::InvalidArgument);

    // Cut and ready at once; the same request again is the same snapshot.
    let s1 = create(snap_req("snap-1", &a.volume_id)).unwrap();
    assert!(s1.ready_to_use);
    assert_eq!(
        (s1.size_bytes, s1.source_volume_id.as_str()),
        (64 * MIB, a.volume_id.as_str())
    );
    assert!(s1.creation_time.as_ref().is_some_and(|t| t.seconds > 0));
    assert_eq!(create(snap_req("snap-1", &a.volume_id)).unwrap(), s1);
    let s = code(create(snap_req("snap-1", &b.volume_id)));
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");
    let s2 = create(snap_req("snap-2", &b.volume_id)).unwrap();

    // Listing: all, pages, filters.
    let all = list(list_req(0, "", "", "")).unwrap();
    let ids: Vec<&str> = all
        .entries
        .iter()
        .map(|e| e.snapshot.as_ref().unwrap().snapshot_id.as_str())
        .collect();
    let mut want = vec![s1.snapshot_id.as_str(), s2.snapshot_id.as_str()];
    want.sort();
    assert_eq!((ids, all.next_token.as_str()), (want.clone(), ""));
    let p1 = list(list_req(1, "", "", "")).unwrap();
    assert_eq!(p1.entries.len(), 1);
    assert!(!p1.next_token.is_empty());
    let p2 = list(list_req(1, &p1.next_token, "", "")).unwrap();
    assert_eq!(
        p2.entries[0].snapshot.as_ref().unwrap().snapshot_id,
        want[1]
    );
    assert_eq!(p2.next_token, "");
    assert_eq!(code(list(list_req(0, "zzz", "", ""))).code(), Code::Aborted);
    assert_eq!(
        code(list(list_req(-1, "", "", ""))).code(),
        Code::InvalidArgument
    );
    let one = list(list_req(0, "", "", &s2.snapshot_id)).unwrap();
    assert_eq!(one.entries.len(), 1);
    assert_eq!(one.entries[0].snapshot.as_ref().unwrap(), &s2);
    for unknown in ["nope", &s2.snapshot_id.replace("snap-2", "snap-9")] {
        assert!(list(list_req(0, "", "", unknown))
            .unwrap()
            .entries
            .is_empty());
    }
    let by_source = list(list_req(0, "", &a.volume_id, "")).unwrap();
    assert_eq!(by_source.entries.len(), 1);
    assert_eq!(by_source.entries[0].snapshot.as_ref().unwrap(), &s1);

    // A volume from a snapshot: the source's size unless asked for more; never less.
    let mut r = req("pvc-r", 0, &[]);
    r.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    let restored = e.create(r.clone()).unwrap();
    assert_eq!(restored.capacity_bytes, 64 * MIB);
    assert_eq!(restored.content_source, r.volume_content_source);
    assert_eq!(e.create(r.clone()).unwrap(), restored);
    let mut other = r.clone();
    other.volume_content_source = Some(from("snapshot", &s2.snapshot_id));
    assert_eq!(code(e.create(other)).code(), Code::AlreadyExists);
    let mut plain_again = r.clone();
    plain_again.volume_content_source = None;
    assert_eq!(code(e.create(plain_again)).code(), Code::AlreadyExists);
    let mut grown = req("pvc-g", 128 * MIB, &[]);
    grown.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    assert_eq!(e.create(grown).unwrap().capacity_bytes, 128 * MIB);
    let mut small = req("pvc-small", 16 * MIB, &[]);
    small.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    assert_eq!(code(e.create(small)).code(), Code::OutOfRange);
    for (kind, id) in [
        ("snapshot", "nope".to_owned()),
        ("snapshot", s1.snapshot_id.replace("snap-1", "snap-9")),
        ("volume", a.volume_id.replace("pvc-a", "pvc-gone")),
    ] {
        let mut r = req("pvc-x", 0, &[]);
        r.volume_content_source = Some(from(kind, &id));
        let s = code(e.create(r));
        assert_eq!(s.code(), Code::NotFound, "{kind} {id}: {s:?}");
    }
    // A clone of a volume.
    let mut c = req("pvc-c", 0, &[]);
    c.volume_content_source = Some(from("volume", &b.volume_id));
    assert_eq!(e.create(c).unwrap().capacity_bytes, 32 * MIB);

    // A thick class's volume gets a copy-on-write snapshot, its store `cowSize` (a
    // share or a size; anything else refused by name), restored into a thick volume;
    // a thick class takes no thin source.
    let p = e
        .create(req("pvc-p", 8 * MIB, &[("deviceClass", "plain")]))
        .unwrap();
    let mut bad = snap_req("snap-p", &p.volume_id);
    bad.parameters.insert("cowSize".into(), "150%".into());
    let s = code(create(bad));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("150%"), "{s:?}");
    let mut cow = snap_req("snap-p", &p.volume_id);
    cow.parameters.insert("cowSize".into(), "50%".into());
    let sp = create(cow.clone()).unwrap();
    assert_eq!((sp.size_bytes, sp.ready_to_use), (8 * MIB, true));
    assert_eq!(create(cow).unwrap(), sp);
    // Restored into a thick volume of its class by copying, at its size.
    let mut q = req("pvc-q", 0, &[("deviceClass", "plain")]);
    q.volume_content_source = Some(from("snapshot", &sp.snapshot_id));
    let qv = e.create(q.clone()).unwrap();
    assert_eq!(qv.capacity_bytes, 8 * MIB);
    assert_eq!(qv.content_source, q.volume_content_source);
    assert_eq!(e.create(q).unwrap().volume_id, qv.volume_id);
    e.delete(&qv.volume_id);
    delete(&sp.snapshot_id).unwrap();
    delete(&sp.snapshot_id).unwrap();
    let mut r = req("pvc-y", 0, &[("deviceClass", "plain")]);
    r.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    let s = code(e.create(r));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("thin pool"), "{s:?}");
    let mut r = req("pvc-y", 0, &[("layout", "linear")]);
    r.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    assert_eq!(code(e.create(r)).code(), Code::InvalidArgument);

    // The source goes, its snapshot stays and still restores.
    e.delete(&a.volume_id);
    assert_eq!(
        list(list_req(0, "", "", &s1.snapshot_id))
            .unwrap()
            .entries
            .len(),
        1
    );
    let mut late = req("pvc-late", 0, &[]);
    late.volume_content_source = Some(from("snapshot", &s1.snapshot_id));
    assert_eq!(e.create(late).unwrap().capacity_bytes, 64 * MIB);

    // Deletion: the id required, then idempotent (unknown ids and gone ones are OK).
    assert_eq!(code(delete("")).code(), Code::InvalidArgument);
    delete(&s1.snapshot_id).unwrap();
    delete(&s1.snapshot_id).unwrap();
    delete("nope").unwrap();
    // A volume's id is no snapshot's.
    assert_eq!(code(delete(&b.volume_id)).code(), Code::FailedPrecondition);
    let left = list(list_req(0, "", "", "")).unwrap();
    assert_eq!(left.entries.len(), 1);
    assert_eq!(left.entries[0].snapshot.as_ref().unwrap(), &s2);
}
