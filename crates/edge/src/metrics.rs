//! What every module's metrics are built from: closed label enums and the counter families
//! they label, in the one `prometheus-client` registry created at start and handed down.
//!
//! Each module registers the families it counts and resolves every label combination once
//! into handles kept in fields, so counting on the hot path is a relaxed atomic add on a
//! known counter: no label hashing, no lock, no allocation. Every label takes its values
//! from a closed enum ([`label_enum!`] here, or the session crate's), so no input can grow
//! the number of series. The README's metrics table lists the families.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::net::SocketAddr;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::config::ListenerKind;

/// A label set of fixed names and values from closed enums.
pub type Labels<const N: usize> = [(&'static str, &'static str); N];
/// The label set of per-listener families: kind and bound address, then any enum label.
pub type ListenerLabels = Vec<(&'static str, String)>;

/// A closed set of label values; [`label_enum!`] implements it.
pub trait Label: Copy + Debug + 'static {
    /// Every value, in [`Label::index`] order.
    const ALL: &'static [Self];

    /// The metric label value.
    fn as_str(self) -> &'static str;

    /// The position in [`Label::ALL`].
    fn index(self) -> usize;
}

/// Declares a closed label enum with its label values, in `ALL`/`index` order.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $label:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $crate::metrics::Label for $name {
            const ALL: &'static [Self] = &[$(Self::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use label_enum;

/// The handles of one family, one per value of the label enum `E`, resolved at start.
#[derive(Debug, Clone)]
pub struct ByLabel<E, M = Counter> {
    handles: Vec<M>,
    label: PhantomData<E>,
}

impl<E: Label, M> ByLabel<E, M> {
    fn new(handles: Vec<M>) -> Self {
        debug_assert_eq!(handles.len(), E::ALL.len());
        Self {
            handles,
            label: PhantomData,
        }
    }

    pub fn get(&self, value: E) -> &M {
        &self.handles[value.index()]
    }
}

impl<E: Label> ByLabel<E> {
    pub fn inc(&self, value: E) {
        self.get(value).inc();
    }
}

/// Registers a labelled family and resolves one handle per label set, in order.
pub fn handles<M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label_sets: impl IntoIterator<Item = Labels<N>>,
) -> Vec<M>
where
    M: Default + Clone,
    Family<Labels<N>, M>: Metric,
{
    let family = Family::<Labels<N>, M>::default();
    registry.register(name, help, family.clone());
    label_sets
        .into_iter()
        .map(|labels| family.get_or_create(&labels).clone())
        .collect()
}

/// [`handles`] for counters.
pub fn counters<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label_sets: impl IntoIterator<Item = Labels<N>>,
) -> Vec<Counter> {
    handles(registry, name, help, label_sets)
}

/// A family with the one label `label`, taking every value of `E`.
pub fn by_label<E: Label, M>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
) -> ByLabel<E, M>
where
    M: Default + Clone,
    Family<Labels<1>, M>: Metric,
{
    let sets = E::ALL.iter().map(|value| [(label, value.as_str())]);
    ByLabel::new(handles(registry, name, help, sets))
}

pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

/// A counter of seconds (fractional), for time spent in a state.
pub fn seconds_counter(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Counter<f64, std::sync::atomic::AtomicU64> {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

/// The `listener` and `address` labels of a listening address.
pub fn listener_labels(kind: ListenerKind, address: SocketAddr) -> ListenerLabels {
    vec![
        ("listener", kind.to_string()),
        ("address", address.to_string()),
    ]
}

/// A counter family labelled by listener and address plus `E`; each listening address
/// resolves its own handles (sockets sharing an address share its series).
#[derive(Debug)]
pub struct PerListener<E> {
    family: Family<ListenerLabels, Counter>,
    label: &'static str,
    values: PhantomData<E>,
}

impl<E: Label> PerListener<E> {
    pub fn register(registry: &mut Registry, name: &str, help: &str, label: &'static str) -> Self {
        let family = Family::<ListenerLabels, Counter>::default();
        registry.register(name, help, family.clone());
        Self {
            family,
            label,
            values: PhantomData,
        }
    }

    /// The handles of the listener of `kind` bound to `address`.
    pub fn resolve(&self, kind: ListenerKind, address: SocketAddr) -> ByLabel<E> {
        let base = listener_labels(kind, address);
        let handles = E::ALL
            .iter()
            .map(|value| {
                let mut labels = base.clone();
                labels.push((self.label, value.as_str().to_owned()));
                self.family.get_or_create(&labels).clone()
            })
            .collect();
        ByLabel::new(handles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Scrape;

    label_enum! {
        /// A label for these tests.
        Color {
            Red => "red",
            Green => "green",
        }
    }

    /// Every label enum's `index` is its position in `ALL`, which the handle vectors rely on.
    #[test]
    fn label_enums_index_their_all_lists() {
        fn check<T: Label + PartialEq>() {
            for (i, value) in T::ALL.iter().enumerate() {
                assert_eq!(value.index(), i, "{value:?}");
            }
        }
        check::<Color>();
        check::<crate::admission::LimitTrigger>();
        check::<crate::admission::SessionState>();
        check::<crate::close::Ended>();
        check::<crate::tls::TlsOutcome>();
        check::<crate::proxy_listener::ProxyVersion>();
        check::<crate::proxy_listener::ProxyCommand>();
        check::<crate::proxy_listener::ProxyOutcome>();
    }

    #[test]
    fn handles_land_in_their_series() {
        let mut registry = Registry::default();
        let colors: ByLabel<Color> = by_label(&mut registry, "t_colors", "test", "color");
        let per_listener =
            PerListener::<Color>::register(&mut registry, "t_listener", "test", "color");
        colors.inc(Color::Green);
        let address = "127.0.0.1:5222".parse().unwrap();
        per_listener
            .resolve(ListenerKind::Starttls, address)
            .inc(Color::Red);
        // A second socket on the same address counts into the same series.
        per_listener
            .resolve(ListenerKind::Starttls, address)
            .inc(Color::Red);
        let scrape = Scrape::of(&registry);
        assert_eq!(scrape.sum("t_colors_total", &[("color", "green")]), 1);
        assert_eq!(scrape.sum("t_colors_total", &[("color", "red")]), 0);
        assert_eq!(
            scrape.sum(
                "t_listener_total",
                &[
                    ("listener", "starttls"),
                    ("address", "127.0.0.1:5222"),
                    ("color", "red")
                ]
            ),
            2
        );
        assert_eq!(scrape.sum("t_listener_total", &[]), 2);
    }
}
