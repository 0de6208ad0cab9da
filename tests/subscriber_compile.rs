use imserver::subscriber::compile;
#[test]
fn t() {
    let _ = compile(None, None, &mut |_| None).unwrap();
}
