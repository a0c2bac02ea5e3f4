//! CSI volume group snapshots, written from the spec's GroupController sections
//! (GroupControllerGetCapabilities, CreateVolumeGroupSnapshot, GetVolumeGroupSnapshot,
//! DeleteVolumeGroupSnapshot): required fields INVALID_ARGUMENT, an unknown source
//! NOT_FOUND, volumes that cannot be snapshotted together FAILED_PRECONDITION, a name
//! reused with other sources ALREADY_EXISTS, idempotent creates and deletes, Get of a
//! deleted group NOT_FOUND, `snapshot_ids` mismatches INVALID_ARGUMENT; the snapshots
//! returned are snapshots like others (ListSnapshots, CreateVolume's content source,
//! DeleteSnapshot). Needs an env whose default class has a thin pool and a class
//! `plain` without one; snapshots already there (another suite's) are left alone.

use super::{code, req, Env};
use lvmd::csi::pb::group_controller_client::GroupControllerClient;
use lvmd::csi::pb::volume_content_source::{SnapshotSource, Type};
use lvmd::csi::pb::*;
use tonic::Code;

const MIB: i64 = 1 << 20;

fn group_req(name: &str, sources: &[&str]) -> CreateVolumeGroupSnapshotRequest {
    CreateVolumeGroupSnapshotRequest {
        name: name.into(),
        source_volume_ids: sources.iter().map(|s| s.to_string()).collect(),
        secrets: Default::default(),
        parameters: Default::default(),
    }
}

fn ids(g: &VolumeGroupSnapshot) -> Vec<String> {
    g.snapshots.iter().map(|s| s.snapshot_id.clone()).collect()
}

pub fn group_snapshot_rules(e: &Env) {
    let gc = || GroupControllerClient::new(e.ch());
    let caps = e
        .rt
        .block_on(gc().group_controller_get_capabilities(GroupControllerGetCapabilitiesRequest {}))
        .unwrap()
        .into_inner()
        .capabilities;
    use group_controller_service_capability::{rpc::Type as T, Type as CapType};
    assert!(
        caps.iter().any(|c| matches!(&c.r#type,
            Some(CapType::Rpc(r)) if r.r#type == T::CreateDeleteGetVolumeGroupSnapshot as i32)),
        "{caps:?}"
    );
    let create = |r: CreateVolumeGroupSnapshotRequest| {
        e.rt.block_on(gc().create_volume_group_snapshot(r))
            .map(|r| r.into_inner().group_snapshot.unwrap())
    };
    let get = |id: &str, snapshot_ids: Vec<String>| {
        e.rt.block_on(
            gc().get_volume_group_snapshot(GetVolumeGroupSnapshotRequest {
                group_snapshot_id: id.into(),
                snapshot_ids,
                secrets: Default::default(),
            }),
        )
        .map(|r| r.into_inner().group_snapshot.unwrap())
    };
    let delete = |id: &str, snapshot_ids: Vec<String>| {
        e.rt.block_on(
            gc().delete_volume_group_snapshot(DeleteVolumeGroupSnapshotRequest {
                group_snapshot_id: id.into(),
                snapshot_ids,
                secrets: Default::default(),
            }),
        )
        .map(|_| ())
    };

    let a = e.create(req("pvc-ga", 64 * MIB, &[])).unwrap();
    let b = e.create(req("pvc-gb", 32 * MIB, &[])).unwrap();
    let p = e
        .create(req("pvc-gp", 8 * MIB, &[("deviceClass", "plain")]))
        .unwrap();
    let (a_id, b_id) = (a.volume_id.as_str(), b.volume_id.as_str());

    let none = ListSnapshotsRequest::default();
    let listed = |r: ListSnapshotsRequest| -> Vec<Snapshot> {
        e.rt.block_on(e.ctl().list_snapshots(r))
            .unwrap()
            .into_inner()
            .entries
            .into_iter()
            .map(|x| x.snapshot.unwrap())
            .collect()
    };
    // What was there before (another suite's snapshots): each check is against it.
    let others = listed(none.clone());
    let ours = |all: Vec<Snapshot>| -> Vec<Snapshot> {
        all.into_iter().filter(|s| !others.contains(s)).collect()
    };

    // Required fields and what cannot be snapshotted together; nothing made.
    let mut with_params = group_req("vgs-1", &[a_id, b_id]);
    with_params.parameters.insert("x".into(), "y".into());
    for (r, c) in [
        (group_req("", &[a_id]), Code::InvalidArgument),
        (group_req("vgs-1", &[]), Code::InvalidArgument),
        (with_params, Code::InvalidArgument),
        (group_req("vgs-1", &[a_id, "not-an-id"]), Code::NotFound),
        (
            group_req("vgs-1", &[a_id, &a.volume_id.replace("pvc-ga", "pvc-gone")]),
            Code::NotFound,
        ),
        (
            group_req("vgs-1", &[a_id, &p.volume_id]),
            Code::FailedPrecondition,
        ),
        (group_req("vgs-1", &[a_id, a_id]), Code::InvalidArgument),
    ] {
        let s = code(create(r.clone()));
        assert_eq!(s.code(), c, "{r:?}: {s:?}");
    }
    assert!(
        ours(listed(none.clone())).is_empty(),
        "a refusal made nothing"
    );

    // Cut and ready: one snapshot per source, each naming the group.
    let g = create(group_req("vgs-1", &[a_id, b_id])).unwrap();
    assert!(g.ready_to_use && !g.group_snapshot_id.is_empty());
    assert!(g.creation_time.as_ref().is_some_and(|t| t.seconds > 0));
    let mut sources: Vec<(&str, i64)> = g
        .snapshots
        .iter()
        .map(|s| (s.source_volume_id.as_str(), s.size_bytes))
        .collect();
    sources.sort();
    let mut want = vec![(a_id, 64 * MIB), (b_id, 32 * MIB)];
    want.sort();
    assert_eq!(sources, want);
    assert!(g
        .snapshots
        .iter()
        .all(|s| s.ready_to_use && s.group_snapshot_id == g.group_snapshot_id));
    // Idempotent (the sources in another order too); other sources: ALREADY_EXISTS.
    assert_eq!(create(group_req("vgs-1", &[a_id, b_id])).unwrap(), g);
    let again = create(group_req("vgs-1", &[b_id, a_id])).unwrap();
    assert_eq!(
        (&again.group_snapshot_id, ids(&again)),
        (&g.group_snapshot_id, ids(&g))
    );
    let s = code(create(group_req("vgs-1", &[a_id])));
    assert_eq!(s.code(), Code::AlreadyExists, "{s:?}");

    // Get: as created; a mismatched list INVALID_ARGUMENT; an unknown id NOT_FOUND.
    assert_eq!(get(&g.group_snapshot_id, ids(&g)).unwrap(), g);
    assert_eq!(get(&g.group_snapshot_id, vec![]).unwrap(), g);
    let s = code(get(&g.group_snapshot_id, ids(&g)[..1].to_vec()));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let mut foreign = ids(&g);
    foreign.push("other-node#x#y".into());
    let s = code(get(&g.group_snapshot_id, foreign));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    for unknown in [
        "nope".to_owned(),
        g.group_snapshot_id.replace("vgs-1", "vgs-9"),
    ] {
        let s = code(get(&unknown, vec![]));
        assert_eq!(s.code(), Code::NotFound, "{unknown}: {s:?}");
    }
    assert_eq!(code(get("", vec![])).code(), Code::InvalidArgument);

    // Its snapshots are snapshots: listed with their group, and a volume's source.
    let mut members = ours(listed(none.clone()));
    members.sort_by(|x, y| x.snapshot_id.cmp(&y.snapshot_id));
    let mut made = g.snapshots.clone();
    made.sort_by(|x, y| x.snapshot_id.cmp(&y.snapshot_id));
    assert_eq!(members, made);
    let of_a = g
        .snapshots
        .iter()
        .find(|s| s.source_volume_id == a_id)
        .unwrap();
    let mut r = req("pvc-from-group", 64 * MIB, &[]);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(Type::Snapshot(SnapshotSource {
            snapshot_id: of_a.snapshot_id.clone(),
        })),
    });
    let restored = e.create(r).unwrap();
    assert_eq!(restored.capacity_bytes, 64 * MIB);

    // Delete: a mismatched list refused; then gone (Get NOT_FOUND), again OK, an id
    // not ours OK; the restored volume stays.
    let s = code(delete(&g.group_snapshot_id, ids(&g)[1..].to_vec()));
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    delete(&g.group_snapshot_id, ids(&g)).unwrap();
    assert_eq!(
        code(get(&g.group_snapshot_id, vec![])).code(),
        Code::NotFound
    );
    delete(&g.group_snapshot_id, ids(&g)).unwrap();
    delete("not-ours", vec![]).unwrap();
    assert_eq!(code(delete("", vec![])).code(), Code::InvalidArgument);
    assert!(ours(listed(none.clone())).is_empty());

    // A member deleted alone (DeleteSnapshot): the group has the rest, and its
    // deletion with the original list (one id gone) succeeds.
    let g2 = create(group_req("vgs-2", &[a_id, b_id])).unwrap();
    e.rt.block_on(e.ctl().delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: g2.snapshots[0].snapshot_id.clone(),
        secrets: Default::default(),
    }))
    .unwrap();
    let left = get(&g2.group_snapshot_id, ids(&g2)).unwrap();
    assert_eq!(ids(&left), ids(&g2)[1..].to_vec());
    delete(&g2.group_snapshot_id, ids(&g2)).unwrap();
    assert!(ours(listed(none)).is_empty());

    for v in [&restored, &a, &b, &p] {
        e.delete(&v.volume_id);
    }
}
