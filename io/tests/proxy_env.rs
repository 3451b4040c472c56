//! The proxy named by this process's environment is used by `Client::from_env`. One test in
//! its own binary: it sets environment variables, which no other test here may see.

mod support;

use keel_common::cancel::Cancel;
use keel_io::http::{Client, Limits};
use support::{Reply, Server};

#[test]
fn http_proxy_from_the_environment_receives_the_request() {
    let target = Server::start();
    let proxy = Server::start();
    proxy.route("/pkg.deb", vec![Reply::ok(b"proxied")]);
    for name in [
        "no_proxy",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "http_proxy",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("HTTP_PROXY", format!("http://127.0.0.1:{}", proxy.port));
    let client = Client::from_env().unwrap();
    let body = client
        .get(
            &target.url("/pkg.deb"),
            Limits::max_bytes(1024),
            &Cancel::new(),
        )
        .unwrap();
    assert_eq!(body, b"proxied");
    assert_eq!(
        proxy.seen()[0].line,
        format!("GET {} HTTP/1.1", target.url("/pkg.deb"))
    );
    assert!(target.seen().is_empty());
}
