//! Helpers shared by the allocator's unit tests.

use super::{Allocator, Changes, CrossId, PlatId, ServId};

pub(super) fn changes(a: &mut Allocator) -> Changes {
    let mut c = Changes::default();
    a.take_changes(&mut c);
    c
}

pub(super) fn setup() -> (Allocator, PlatId) {
    let mut a = Allocator::new(4);
    let p = a.platforms.intern("p1").expect("room");
    (a, p)
}

pub(super) fn assignment(a: &Allocator, serv: ServId) -> Option<(CrossId, u16)> {
    a.game(serv).and_then(|g| g.assignment)
}
