//! What the labeling service wrote of each entity (`LabelingEvent::EffectiveLabels` on
//! `effective/<cluster>`), kept compactly: labels and whole label sets are interned, so the pods
//! of one controller, labeled alike, hold one pointer between them, and a label shared by many
//! sets (a namespace's profile assignment) is one allocation.

use std::sync::Arc;

use bulkhead_schema::messages::inventory::{
    AssignedLabel, EffectiveLabeling, LabelSelector, ResourceKind,
};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, EntityKind, LabelMapOrigin, LabelSource,
};

use super::{CONTROLLERS, Pools, Str};

/// A Bulkhead label an entity carries, and why.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Label {
    pub(crate) key: Str,
    pub(crate) href: Str,
    pub(crate) value: Str,
    pub(crate) source: Source,
}

/// [`LabelSource`] with its strings interned.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    LabelMap {
        origin: LabelMapOrigin,
        map: Str,
        from_key: Str,
    },
    Profile,
    Annotation {
        kind: Str,
        name: Str,
        key: Str,
        template: bool,
    },
    Node {
        name: Str,
    },
}

/// What labeling last wrote of one entity.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Labeling {
    pub(crate) managed: bool,
    pub(crate) enforcement_mode: Option<EnforcementMode>,
    /// By key.
    pub(crate) labels: Box<[Arc<Label>]>,
}

/// One label as the wire has it, whichever message it comes from: key, href, value, source.
pub(crate) type WireLabel<'a> = (&'a str, &'a str, &'a str, &'a LabelSource);

impl Pools {
    /// The shared labeling of an entity.
    pub(crate) fn labeling<'a>(
        &mut self,
        managed: bool,
        enforcement_mode: Option<EnforcementMode>,
        labels: impl Iterator<Item = WireLabel<'a>>,
    ) -> Arc<Labeling> {
        let mut labels: Vec<Arc<Label>> = labels
            .map(|(key, href, value, source)| {
                let label = Label {
                    key: self.str(key),
                    href: self.str(href),
                    value: self.str(value),
                    source: self.source(source),
                };
                self.labels.intern(label)
            })
            .collect();
        labels.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        self.labelings.intern(Labeling {
            managed,
            enforcement_mode,
            labels: labels.into(),
        })
    }

    /// The shared labeling of a view's (a checkpoint stores views).
    pub(crate) fn labeling_of_view(&mut self, view: &EffectiveLabeling) -> Arc<Labeling> {
        let labels = view
            .labels
            .iter()
            .map(|l| (l.key.as_str(), l.href.as_str(), l.value.as_str(), &l.source));
        self.labeling(view.managed, view.enforcement_mode, labels)
    }

    fn source(&mut self, source: &LabelSource) -> Source {
        match source {
            LabelSource::LabelMap {
                origin,
                map,
                from_key,
            } => Source::LabelMap {
                origin: *origin,
                map: self.str(map),
                from_key: self.str(from_key),
            },
            LabelSource::Profile => Source::Profile,
            LabelSource::Annotation {
                kind,
                name,
                key,
                template,
            } => Source::Annotation {
                kind: self.str(kind),
                name: self.str(name),
                key: self.str(key),
                template: *template,
            },
            LabelSource::Node { name } => Source::Node {
                name: self.str(name),
            },
        }
    }
}

impl Source {
    fn view(&self) -> LabelSource {
        match self {
            Source::LabelMap {
                origin,
                map,
                from_key,
            } => LabelSource::LabelMap {
                origin: *origin,
                map: map.to_string(),
                from_key: from_key.to_string(),
            },
            Source::Profile => LabelSource::Profile,
            Source::Annotation {
                kind,
                name,
                key,
                template,
            } => LabelSource::Annotation {
                kind: kind.to_string(),
                name: name.to_string(),
                key: key.to_string(),
                template: *template,
            },
            Source::Node { name } => LabelSource::Node {
                name: name.to_string(),
            },
        }
    }
}

impl Labeling {
    pub(crate) fn view(&self) -> EffectiveLabeling {
        EffectiveLabeling {
            managed: self.managed,
            enforcement_mode: self.enforcement_mode,
            labels: self
                .labels
                .iter()
                .map(|label| AssignedLabel {
                    href: label.href.to_string(),
                    key: label.key.to_string(),
                    value: label.value.to_string(),
                    source: label.source.view(),
                })
                .collect(),
        }
    }

    /// Whether the entity carries the label `selector` names. Values compare ignoring ASCII
    /// case: labeling keeps them unique so, hence `role=Web` can only mean `role=web`.
    pub(crate) fn carries(&self, selector: &LabelSelector) -> bool {
        self.labels.iter().any(|label| match selector {
            LabelSelector::Href(href) => *label.href == **href,
            LabelSelector::KeyValue { key, value } => {
                *label.key == **key && label.value.eq_ignore_ascii_case(value)
            }
        })
    }
}

/// The kinds of object an entity of `kind` can be.
pub(crate) fn resource_kinds(kind: EntityKind) -> &'static [ResourceKind] {
    match kind {
        EntityKind::Node => &[ResourceKind::Node],
        EntityKind::Pod => &[ResourceKind::Pod],
        EntityKind::Service => &[ResourceKind::Service],
        EntityKind::KubeWorkload => &CONTROLLERS,
    }
}

/// The kind of entity an object of `kind` is, if labeling labels such objects.
pub(crate) fn entity_kind(kind: ResourceKind) -> Option<EntityKind> {
    [
        EntityKind::Node,
        EntityKind::Pod,
        EntityKind::Service,
        EntityKind::KubeWorkload,
    ]
    .into_iter()
    .find(|entity| resource_kinds(*entity).contains(&kind))
}
