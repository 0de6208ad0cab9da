use super::*;

fn binding(uri: &str, expires_at_ms: u64) -> Binding {
    Binding {
        contact_uri: uri.into(),
        params: String::new(),
        q_milli: None,
        oma_im: true,
        call_id: "c1".into(),
        cseq: 1,
        expires_at_ms,
        updated_ms: 1,
        seq: 1,
        source_addr: "127.0.0.1:5070".parse().unwrap(),
        tcp: false,
        conn: None,
        third_party: false,
    }
}

#[test]
fn batches_survive_reopen_and_none_removes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Store::open(dir.path()).unwrap();
        s.write(&Batch {
            bindings: vec![
                (
                    "bob@example.com".into(),
                    Some(vec![binding("sip:bob@127.0.0.1:5070", 99)]),
                ),
                (
                    "tom@example.com".into(),
                    Some(vec![binding("sip:tom@127.0.0.1:5071", 99)]),
                ),
            ],
            publications: vec![],
            cache: vec![],
        })
        .unwrap();
        s.write(&Batch {
            bindings: vec![("tom@example.com".into(), None)],
            publications: vec![],
            cache: vec![],
        })
        .unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    let rows = s.bindings().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "bob@example.com");
    assert_eq!(rows[0].1[0].contact_uri, "sip:bob@127.0.0.1:5070");
    assert!(s.publications().unwrap().is_empty());
}

#[test]
fn credentials_update_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let cs = CredentialStore::new(dir.path());
    assert!(cs.load().unwrap().is_empty());
    cs.update(|c| c.add("sip:bob@example.com", "secret"))
        .unwrap()
        .unwrap();
    let loaded = cs.load().unwrap();
    assert_eq!(loaded.len(), 1);
    assert!(loaded.lookup(b"bob@example.com").is_some());
    let removed = cs
        .update(|c| c.remove("sip:bob@example.com"))
        .unwrap()
        .unwrap();
    assert!(removed);
    assert!(cs.load().unwrap().is_empty());
}
