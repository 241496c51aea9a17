//! `examples/relay.rs`: its handler, embedded, relays between real game and cross nodes.

mod common;

#[path = "../examples/relay.rs"]
mod relay;

use common::*;
use login_node::client::ServerMessage;
use login_node::LoginNode;

fn expect_app(c: &mut login_node::client::Client) -> (u16, Vec<u8>) {
    loop {
        match c.recv(REPLY).expect("frame") {
            Some(ServerMessage::App { cmd, body }) => return (cmd, body),
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
}

#[test]
fn the_relay_example_carries_commands_between_a_game_node_and_its_cross_node() {
    let node = LoginNode::builder()
        .config(config())
        .handler(relay::Relay::default())
        .build()
        .expect("build");
    let server = start_node(node);
    let (mut cross, _) = server.cross(9, "p", 90, 10);
    let mut game = server.game(101, "p");
    assert_eq!(expect_assign(&mut game), (90, 1));
    let _ = expect_members(&mut cross);

    game.send_app(relay::TO_CROSS, b"ping").expect("send");
    let (cmd, body) = expect_app(&mut cross);
    assert_eq!(cmd, relay::TO_CROSS);
    assert_eq!(body, [&101u32.to_be_bytes()[..], b"ping"].concat());

    cross
        .send_app(
            relay::TO_GAME,
            &[&101u32.to_be_bytes()[..], b"pong"].concat(),
        )
        .expect("send");
    assert_eq!(expect_app(&mut game), (relay::TO_GAME, b"pong".to_vec()));

    // A cross node cannot reach a game node that is not its member.
    let mut other = server.game(202, "q");
    cross
        .send_app(
            relay::TO_GAME,
            &[&202u32.to_be_bytes()[..], b"nope"].concat(),
        )
        .expect("send");
    expect_quiet(&mut other, std::time::Duration::from_millis(200));
    server.stop().expect("stop");
}

#[test]
fn the_builder_validates_like_the_binary() {
    let err = LoginNode::builder()
        .config(config())
        .heartbeat(30, 10)
        .build()
        .err()
        .expect("timeout below interval is refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("heartbeat_timeout"), "{err}");
}

#[test]
fn the_shutdown_handle_is_send_and_clone() {
    fn send_clone<T: Send + Sync + Clone + 'static>() {}
    send_clone::<login_node::ShutdownHandle>();
    let node = LoginNode::builder()
        .config(config())
        .build()
        .expect("build");
    let handle = node.shutdown_handle();
    let server = start_node(node);
    let other = handle.clone();
    std::thread::spawn(move || other.shutdown())
        .join()
        .expect("stopped from another thread");
    server.stop().expect("run returned");
}
