//! Behaviour every `Store` backend must show. Runs against a real SQLite file.

use tollgate_core::access::{KeyStatus, OrgStatus};
use tollgate_core::api_key::SecretHash;
use tollgate_core::ids::{KeyId, OrgId};
use tollgate_core::time::UnixMillis;
use tollgate_store::{
    AutochargeAttempt, AutochargeOutcome, KeyRow, OrgRow, SqliteStore, Store, StoreError,
};

fn org(n: u8) -> OrgRow {
    OrgRow {
        id: OrgId::from_random([n; 10]),
        name: format!("org {n}"),
        status: OrgStatus::Active,
        plan: None,
        cycle_anchor: None,
        pay_as_you_go: false,
        created_at: UnixMillis(1_000),
        updated_at: UnixMillis(1_000),
    }
}

fn key(n: u8, org: &OrgId) -> KeyRow {
    let id = KeyId::from_random([n; 10]);
    KeyRow {
        secret_hash: SecretHash::of(id.as_str(), "secret"),
        id,
        org_id: org.clone(),
        name: format!("key {n}"),
        products: vec!["market-data".into()],
        status: KeyStatus::Active,
        expires_at: Some(UnixMillis(9_000)),
        previous_secret_hash: None,
        previous_secret_expires_at: None,
        created_at: UnixMillis(1_000),
        updated_at: UnixMillis(1_000),
        revoked_at: None,
        quotas: Default::default(),
        credentials: Default::default(),
    }
}

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("t.db"))
        .await
        .expect("open");
    (dir, store)
}

#[tokio::test]
async fn orgs_round_trip_and_change() {
    let (_dir, store) = sqlite().await;
    store.ping().await.expect("ping");
    let a = org(1);
    store.create_org(&a).await.expect("create");
    assert!(matches!(
        store.create_org(&a).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(store.get_org(&a.id).await.expect("get"), Some(a.clone()));

    let suspended = store
        .set_org_status(&a.id, OrgStatus::Suspended, UnixMillis(2_000))
        .await
        .expect("suspend")
        .expect("exists");
    assert_eq!(suspended.status, OrgStatus::Suspended);
    assert_eq!(suspended.updated_at, UnixMillis(2_000));
    let planned = store
        .set_org_plan(
            &a.id,
            Some("pro"),
            Some(UnixMillis(2_500)),
            UnixMillis(3_000),
        )
        .await
        .expect("plan")
        .expect("exists");
    assert_eq!(planned.plan.as_deref(), Some("pro"));
    assert_eq!(planned.cycle_anchor, Some(UnixMillis(2_500)));
    let payg = store
        .set_org_pay_as_you_go(&a.id, true, UnixMillis(3_100))
        .await
        .expect("payg")
        .expect("exists");
    assert!(payg.pay_as_you_go);
    let missing = OrgId::from_random([99; 10]);
    assert_eq!(
        store
            .set_org_status(&missing, OrgStatus::Active, UnixMillis(1))
            .await
            .expect("ok"),
        None
    );
}

#[tokio::test]
async fn org_listing_pages_by_id() {
    let (_dir, store) = sqlite().await;
    for n in 1..=5 {
        store.create_org(&org(n)).await.expect("create");
    }
    let first = store.list_orgs(None, 2).await.expect("list");
    assert_eq!(first.len(), 2);
    let rest = store.list_orgs(Some(&first[1].id), 10).await.expect("list");
    assert_eq!(rest.len(), 3);
    assert!(rest.iter().all(|o| o.id > first[1].id));
    assert_eq!(store.all_orgs().await.expect("all").len(), 5);
}

#[tokio::test]
async fn keys_need_their_org_and_round_trip() {
    let (_dir, store) = sqlite().await;
    let a = org(1);
    let orphan = key(1, &a.id);
    assert!(
        store.create_key(&orphan).await.is_err(),
        "foreign key enforced"
    );
    store.create_org(&a).await.expect("org");
    store.create_key(&orphan).await.expect("key");
    assert_eq!(
        store.get_key(&orphan.id).await.expect("get"),
        Some(orphan.clone())
    );
    assert_eq!(
        store.list_keys(&a.id).await.expect("list"),
        vec![orphan.clone()]
    );
    assert_eq!(store.all_keys().await.expect("all").len(), 1);
}

#[tokio::test]
async fn rotation_keeps_the_old_hash_for_the_overlap_and_revocation_is_final() {
    let (_dir, store) = sqlite().await;
    let a = org(1);
    store.create_org(&a).await.expect("org");
    let k = key(2, &a.id);
    store.create_key(&k).await.expect("key");
    let new_hash = SecretHash::of(k.id.as_str(), "new");
    let rotated = store
        .rotate_key(&k.id, new_hash, UnixMillis(5_000), UnixMillis(2_000))
        .await
        .expect("rotate")
        .expect("active key");
    assert_eq!(rotated.secret_hash, new_hash);
    assert_eq!(rotated.previous_secret_hash, Some(k.secret_hash));
    assert_eq!(rotated.previous_secret_expires_at, Some(UnixMillis(5_000)));

    let revoked = store
        .revoke_key(&k.id, UnixMillis(3_000))
        .await
        .expect("revoke")
        .expect("exists");
    assert_eq!(revoked.status, KeyStatus::Revoked);
    assert_eq!(revoked.revoked_at, Some(UnixMillis(3_000)));
    let again = store
        .revoke_key(&k.id, UnixMillis(4_000))
        .await
        .expect("revoke")
        .expect("exists");
    assert_eq!(
        again.revoked_at,
        Some(UnixMillis(3_000)),
        "first revocation time kept"
    );
    assert_eq!(
        store
            .rotate_key(&k.id, new_hash, UnixMillis(9_000), UnixMillis(4_000))
            .await
            .expect("ok"),
        None,
        "a revoked key cannot be rotated back to life"
    );
}

#[tokio::test]
async fn data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let a = org(7);
    {
        let store = SqliteStore::open(&path).await.expect("open");
        store.create_org(&a).await.expect("org");
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(store.get_org(&a.id).await.expect("get"), Some(a));
}

#[tokio::test]
async fn key_quotas_commitments_and_usage_counters() {
    use std::collections::BTreeMap;
    use tollgate_store::{CommitmentRow, UsageRow};
    let (_dir, store) = sqlite().await;
    let a = org(1);
    store.create_org(&a).await.expect("org");
    let k = key(3, &a.id);
    store.create_key(&k).await.expect("key");
    let quotas: BTreeMap<String, u64> = [("request".to_owned(), 50)].into();
    let updated = store
        .set_key_quotas(&k.id, &quotas, UnixMillis(2_000))
        .await
        .expect("set")
        .expect("exists");
    assert_eq!(updated.quotas, quotas);

    let c = CommitmentRow {
        id: "cmt_1".into(),
        org_id: a.id.clone(),
        quotas: [("request".to_owned(), 1_000)].into(),
        starts_at: UnixMillis(1_000),
        ends_at: UnixMillis(5_000),
        created_at: UnixMillis(1_000),
    };
    store.create_commitment(&c).await.expect("commitment");
    assert_eq!(
        store.list_commitments(&a.id).await.expect("list"),
        vec![c.clone()]
    );
    assert_eq!(
        store
            .current_commitments(UnixMillis(4_999))
            .await
            .expect("current")
            .len(),
        1
    );
    assert!(
        store
            .current_commitments(UnixMillis(5_000))
            .await
            .expect("current")
            .is_empty()
    );

    let row = |key: Option<KeyId>, used| UsageRow {
        org_id: a.id.clone(),
        key_id: key,
        cycle_start: UnixMillis(10_000),
        meter: "request".into(),
        used,
    };
    store
        .save_usage(&[row(None, 5), row(Some(k.id.clone()), 3)])
        .await
        .expect("save");
    store.save_usage(&[row(None, 7)]).await.expect("overwrite");
    let mut loaded = store.load_usage(UnixMillis(10_000)).await.expect("load");
    loaded.sort_by_key(|r| r.key_id.is_some());
    assert_eq!(loaded, vec![row(None, 7), row(Some(k.id.clone()), 3)]);
    assert!(
        store
            .load_usage(UnixMillis(10_001))
            .await
            .expect("load")
            .is_empty()
    );
}

#[tokio::test]
async fn idempotency_records_lifecycle() {
    use tollgate_store::{IdempotencyBegin, StoredResponse};
    let (_dir, store) = sqlite().await;
    let a = org(1);
    store.create_org(&a).await.expect("org");
    let fp = [1u8; 32];
    let other = [2u8; 32];
    let t = UnixMillis(10_000);
    let begin = |fp: [u8; 32], now: i64| {
        let store = store.clone();
        let id = a.id.clone();
        async move {
            store
                .idempotency_begin(
                    &id,
                    "k1",
                    &fp,
                    UnixMillis(now),
                    UnixMillis(now + 1_000),
                    UnixMillis(now + 60_000),
                )
                .await
                .expect("begin")
        }
    };
    assert_eq!(begin(fp, t.0).await, IdempotencyBegin::Started);
    assert_eq!(
        begin(fp, t.0 + 1).await,
        IdempotencyBegin::InFlight {
            locked_until: UnixMillis(t.0 + 1_000)
        }
    );
    assert_eq!(begin(other, t.0 + 1).await, IdempotencyBegin::Mismatch);
    // A lapsed lock (crashed holder) is taken over.
    assert_eq!(begin(fp, t.0 + 1_000).await, IdempotencyBegin::Started);

    let response = StoredResponse {
        status: 201,
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"{\"order_id\":\"ord_1\"}".to_vec(),
        body_omitted: false,
    };
    store
        .idempotency_complete(&a.id, "k1", &fp, &response, UnixMillis(t.0 + 60_000))
        .await
        .expect("complete");
    assert_eq!(
        begin(fp, t.0 + 2_000).await,
        IdempotencyBegin::Completed(response)
    );
    assert_eq!(begin(other, t.0 + 2_000).await, IdempotencyBegin::Mismatch);
    // After the retention window the key is free again.
    assert_eq!(begin(other, t.0 + 60_000).await, IdempotencyBegin::Started);
    // Release frees an in-flight key; it does not touch completed ones.
    store
        .idempotency_release(&a.id, "k1", &other)
        .await
        .expect("release");
    assert_eq!(begin(fp, t.0 + 60_001).await, IdempotencyBegin::Started);

    // Concurrent begins: exactly one starts.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .idempotency_begin(
                    &id,
                    "k2",
                    &[9; 32],
                    UnixMillis(1),
                    UnixMillis(1_000),
                    UnixMillis(9_000),
                )
                .await
                .expect("begin")
        }));
    }
    let mut started = 0;
    for task in tasks {
        if task.await.expect("join") == IdempotencyBegin::Started {
            started += 1;
        }
    }
    assert_eq!(started, 1);
    assert_eq!(
        store
            .idempotency_purge(UnixMillis(1_000_000))
            .await
            .expect("purge"),
        2
    );
}

#[tokio::test]
async fn ledger_entries_are_unique_by_reference_and_keep_the_balance() {
    use tollgate_store::{EntryKind, NewEntry, Posted};
    let (_dir, store) = sqlite().await;
    let a = org(1);
    store.create_org(&a).await.expect("org");
    let fresh = store.get_account(&a.id).await.expect("account");
    assert_eq!(
        (
            fresh.balance,
            fresh.credit_limit,
            fresh.budget_thresholds.clone()
        ),
        (0, 0, vec![70, 85, 95])
    );
    let entry = |kind, amount, reference: &str, at| NewEntry {
        org_id: a.id.clone(),
        kind,
        amount,
        reference: reference.into(),
        detail: "{}".into(),
        created_at: UnixMillis(at),
    };
    let posted = store
        .post_entries(&[
            entry(EntryKind::TopUp, 1_000_000, "topup-1", 10),
            entry(EntryKind::Charge, -250, "req-1", 20),
            entry(EntryKind::Charge, -250, "req-1", 21),
            entry(EntryKind::Charge, -100, "req-2", 30),
        ])
        .await
        .expect("post");
    assert_eq!(
        posted,
        vec![
            Posted::Written {
                balance_after: 1_000_000
            },
            Posted::Written {
                balance_after: 999_750
            },
            Posted::Duplicate,
            Posted::Written {
                balance_after: 999_650
            },
        ]
    );
    // A retry of a whole batch writes nothing twice.
    let again = store
        .post_entries(&[entry(EntryKind::Charge, -250, "req-1", 40)])
        .await
        .expect("post");
    assert_eq!(again, vec![Posted::Duplicate]);
    let account = store.get_account(&a.id).await.expect("account");
    let entries = store.list_entries(&a.id, 0, 100).await.expect("list");
    assert_eq!(entries.len(), 3);
    assert_eq!(
        account.balance,
        entries.iter().map(|e| e.entry.amount).sum::<i64>(),
        "balance = sum of entries"
    );
    assert_eq!(
        store
            .list_entries(&a.id, entries[0].id, 1)
            .await
            .expect("page")[0]
            .id,
        entries[1].id
    );
    let charges = store
        .sums_since(EntryKind::Charge, UnixMillis(25))
        .await
        .expect("sums");
    assert_eq!(charges, vec![(a.id.clone(), -100)]);

    let mut settings = account.clone();
    settings.credit_limit = 5_000;
    settings.budget = Some(2_000_000);
    settings.budget_thresholds = vec![50, 90];
    let saved = store
        .set_account_settings(&settings, UnixMillis(50))
        .await
        .expect("settings");
    assert_eq!(
        (saved.credit_limit, saved.budget, saved.balance),
        (5_000, Some(2_000_000), 999_650)
    );

    let attempt = AutochargeAttempt {
        key: "autocharge:a:1".into(),
        amount: 10_000,
        customer: Some("cus_1".into()),
        payment_method: Some("pm_1".into()),
        currency: Some("usd".into()),
    };
    assert!(
        store
            .autocharge_begin(&a.id, &attempt, UnixMillis(55))
            .await
            .expect("begin")
    );
    let other = AutochargeAttempt {
        amount: 20_000,
        payment_method: Some("pm_2".into()),
        ..attempt.clone()
    };
    assert!(
        !store
            .autocharge_begin(&a.id, &other, UnixMillis(56))
            .await
            .expect("begin"),
        "one row per key"
    );
    assert_eq!(
        store.autocharge_pending(&a.id).await.expect("pending"),
        Some((attempt, UnixMillis(55))),
        "the pending attempt as first recorded, parameters included"
    );
    assert_eq!(
        store
            .autocharge_stats(&a.id, UnixMillis(0))
            .await
            .expect("stats"),
        (1, 10_000)
    );
    store
        .autocharge_finish(
            "autocharge:a:1",
            "failed",
            None,
            Some("card_declined"),
            UnixMillis(57),
        )
        .await
        .expect("finish");
    assert_eq!(
        store.autocharge_pending(&a.id).await.expect("pending"),
        None
    );
    assert_eq!(
        store
            .autocharge_stats(&a.id, UnixMillis(0))
            .await
            .expect("stats"),
        (1, 0),
        "failed attempts do not count toward the cap"
    );

    // An outcome changes only the autocharge state, on the stored row.
    let mut on = saved.clone();
    on.autocharge.enabled = true;
    on.autocharge.failures = 0;
    store
        .set_account_settings(&on, UnixMillis(58))
        .await
        .expect("settings");
    let declined = AutochargeOutcome::Failed {
        reason: "card_declined",
        disable_after: 2,
    };
    let once = store
        .autocharge_outcome(&a.id, declined, UnixMillis(59))
        .await
        .expect("outcome");
    assert_eq!(
        (once.autocharge.failures, once.autocharge.enabled),
        (1, true)
    );
    let twice = store
        .autocharge_outcome(&a.id, declined, UnixMillis(60))
        .await
        .expect("outcome");
    assert_eq!(
        (
            twice.autocharge.failures,
            twice.autocharge.enabled,
            twice.autocharge.disabled_reason.as_deref()
        ),
        (
            2,
            false,
            Some("2 consecutive failures, the last: card_declined")
        )
    );
    assert_eq!(
        (twice.credit_limit, twice.budget),
        (saved.credit_limit, saved.budget),
        "other settings kept"
    );
    let reset = store
        .autocharge_outcome(&a.id, AutochargeOutcome::Succeeded, UnixMillis(61))
        .await
        .expect("outcome");
    assert_eq!(reset.autocharge.failures, 0);
    assert!(!reset.payment_action_required);
    let action = store
        .autocharge_outcome(&a.id, AutochargeOutcome::ActionRequired, UnixMillis(62))
        .await
        .expect("outcome");
    assert!(action.payment_action_required);

    assert!(
        store
            .add_notification(
                &a.id,
                "budget_threshold",
                "budget:0:50",
                "{}",
                UnixMillis(60)
            )
            .await
            .expect("n")
    );
    assert!(
        !store
            .add_notification(
                &a.id,
                "budget_threshold",
                "budget:0:50",
                "{}",
                UnixMillis(61)
            )
            .await
            .expect("n")
    );
    assert_eq!(
        store.list_notifications(&a.id).await.expect("list").len(),
        1
    );
}

#[tokio::test]
async fn a_batch_across_orgs_keeps_every_running_balance() {
    use tollgate_store::{EntryKind, NewEntry, Posted};
    let (_dir, store) = sqlite().await;
    let (a, b) = (org(1), org(2));
    store.create_org(&a).await.expect("org");
    store.create_org(&b).await.expect("org");
    let entry = |org: &OrgRow, amount, reference: &str| NewEntry {
        org_id: org.id.clone(),
        kind: EntryKind::Adjustment,
        amount,
        reference: reference.into(),
        detail: "{}".into(),
        created_at: UnixMillis(5),
    };
    let posted = store
        .post_entries(&[
            entry(&a, 100, "x1"),
            entry(&b, 50, "y1"),
            entry(&a, -30, "x2"),
            entry(&b, 7, "y2"),
        ])
        .await
        .expect("post");
    assert_eq!(
        posted,
        vec![
            Posted::Written { balance_after: 100 },
            Posted::Written { balance_after: 50 },
            Posted::Written { balance_after: 70 },
            Posted::Written { balance_after: 57 },
        ]
    );
    assert_eq!(store.get_account(&a.id).await.expect("a").balance, 70);
    assert_eq!(store.get_account(&b.id).await.expect("b").balance, 57);
    let entries = store.list_entries(&a.id, 0, 10).await.expect("list");
    assert_eq!(
        entries.iter().map(|e| e.balance_after).collect::<Vec<_>>(),
        vec![100, 70]
    );
    // Two entries with one reference in one batch: the second is a duplicate.
    let posted = store
        .post_entries(&[entry(&a, 1, "z"), entry(&a, 1, "z")])
        .await
        .expect("post");
    assert_eq!(
        posted,
        vec![Posted::Written { balance_after: 71 }, Posted::Duplicate]
    );
}

#[tokio::test]
async fn key_credentials_replace_whole_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let o = org(9);
    store.create_org(&o).await.unwrap();
    let k = key(9, &o.id);
    store.create_key(&k).await.unwrap();
    assert_eq!(
        store.get_key(&k.id).await.unwrap().unwrap().credentials,
        Default::default()
    );
    let credentials = tollgate_store::KeyCredentials {
        policy: tollgate_core::credential::CredentialPolicy {
            signature: tollgate_core::credential::ClassSet::Write,
            jwt: tollgate_core::credential::ClassSet::None,
            certificate: tollgate_core::credential::ClassSet::All,
        },
        signing_secrets: vec![tollgate_store::SealedSecret {
            id: "ss_one".into(),
            sealed: "c2VhbGVk".into(),
            passphrase_hash: "00".repeat(32),
            created_at: 5,
            expires_at: Some(9),
        }],
        certificate_pins: vec![tollgate_store::CertificatePin {
            thumbprint: "ab".repeat(32),
            created_at: 5,
            expires_at: None,
        }],
    };
    let row = store
        .set_key_credentials(&k.id, &credentials, UnixMillis(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.credentials, credentials);
    assert_eq!(row.updated_at, UnixMillis(7));
    let unknown = KeyId::from_random([200; 10]);
    assert!(
        store
            .set_key_credentials(&unknown, &credentials, UnixMillis(7))
            .await
            .unwrap()
            .is_none()
    );
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.get_key(&k.id).await.unwrap().unwrap().credentials,
        credentials
    );
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_posted_whole() {
    use tollgate_store::{EntryKind, NewEntry, Posted};
    let (_dir, store) = sqlite().await;
    // 6,000 organizations: the multi-row statements must be split to stay
    // under SQLite's limit of bound variables, inside one transaction.
    let orgs: Vec<OrgRow> = (0..6_000u32)
        .map(|n| {
            let mut seed = [5u8; 10];
            seed[..4].copy_from_slice(&n.to_le_bytes());
            OrgRow {
                id: OrgId::from_random(seed),
                ..org(0)
            }
        })
        .collect();
    store.insert_many(&orgs, &[]).await.expect("orgs");
    let entries: Vec<NewEntry> = orgs
        .iter()
        .map(|o| NewEntry {
            org_id: o.id.clone(),
            kind: EntryKind::TopUp,
            amount: 1_000,
            reference: "top_up:seed".into(),
            detail: "{}".into(),
            created_at: UnixMillis(2_000),
        })
        .collect();
    let posted = store.post_entries(&entries).await.expect("post");
    assert!(posted.iter().all(|p| *p
        == Posted::Written {
            balance_after: 1_000
        }));
    let last = store.get_account(&orgs[5_999].id).await.expect("account");
    assert_eq!(last.balance, 1_000);
    // The same batch again: every entry is a duplicate, nothing moves.
    let again = store.post_entries(&entries).await.expect("post");
    assert!(again.iter().all(|p| *p == Posted::Duplicate));
    let first = store.get_account(&orgs[0].id).await.expect("account");
    assert_eq!(first.balance, 1_000);
}
