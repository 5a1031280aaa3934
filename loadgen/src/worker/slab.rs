//! The worker's sessions by poll token.

use super::conn::Conn;

/// Sessions by token: a vector of slots and a free list; the generation tells a reused
/// slot from the session a stale timer or queue entry meant.
#[derive(Default)]
pub(super) struct Slab {
    pub(super) slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    pub(super) len: usize,
}

impl Slab {
    /// Picks a free slot: its index and generation.
    pub(super) fn vacant(&mut self) -> (usize, u32) {
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.0 = slot.0.wrapping_add(1);
                (index as usize, slot.0)
            }
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1, 0)
            }
        }
    }

    pub(super) fn fill(&mut self, index: usize, conn: Conn) {
        self.slots[index].1 = Some(conn);
        self.len += 1;
    }

    /// Returns a slot from [`Slab::vacant`] that was not filled.
    pub(super) fn release(&mut self, index: usize) {
        self.free.push(index as u32);
    }

    pub(super) fn get(&mut self, index: usize, generation: u32) -> Option<&mut Conn> {
        match self.slots.get_mut(index) {
            Some((g, Some(conn))) if *g == generation => Some(conn),
            _ => None,
        }
    }

    pub(super) fn get_any(&mut self, index: usize) -> Option<(u32, &mut Conn)> {
        match self.slots.get_mut(index) {
            Some((g, Some(conn))) => Some((*g, conn)),
            _ => None,
        }
    }

    pub(super) fn remove(&mut self, index: usize) -> Option<Conn> {
        let conn = self.slots.get_mut(index)?.1.take()?;
        self.free.push(index as u32);
        self.len -= 1;
        Some(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_generations_tell_reused_slots_apart() {
        let mut slab = Slab::default();
        let (index, first) = slab.vacant();
        slab.release(index);
        let (again, second) = slab.vacant();
        assert_eq!(index, again);
        assert_ne!(first, second);
        assert!(slab.get(again, second).is_none());
        assert!(slab.remove(again).is_none());
    }
}
