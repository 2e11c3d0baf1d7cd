pub async fn run(
    ctx: std::sync::Arc<crate::context::Context>,
    store: kube::runtime::reflector::Store<crate::crd::MultiVac>,
) {
    let _ = (ctx, store);
    std::future::pending::<()>().await
}
