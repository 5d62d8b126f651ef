//! `bulkhead labels`, `label-dimensions`, `label-groups`, `profiles`, `profile-template` and
//! `label-maps`, over the REST API.
//!
//! People name labels `role=web` and label groups `env=Non-prod`; the API names both by href.
//! So the CLI takes either (or the bare id) and looks names up, and its tables show values and
//! group names where the API answers hrefs. `--output json` prints the API's answers as they are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::ValueEnum;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::cli::Output;
use crate::client::{Client, PageArgs, out, path_segment, print, text, with_query};

const LABELS: &str = "/orgs/1/labels";
const DIMENSIONS: &str = "/orgs/1/label_dimensions";
const GROUPS: &str = "/orgs/1/label_groups";

#[derive(Debug, clap::Subcommand)]
pub enum LabelingCommand {
    /// Labels (key=value): list, create, rename, delete.
    #[command(subcommand)]
    Labels(LabelsCommand),
    /// Label dimensions, the keys labels have: list, create, delete.
    #[command(subcommand)]
    LabelDimensions(DimensionsCommand),
    /// Label groups: named sets of labels of one key, and of other groups of it.
    #[command(subcommand)]
    LabelGroups(GroupsCommand),
    /// A cluster's container workload profiles: one per namespace, and pre-created ones.
    Profiles(ProfilesArgs),
    /// A cluster's profile template: what the profiles of new namespaces start with.
    ProfileTemplate(TemplateArgs),
    /// A cluster's label maps: which Kubernetes labels give which Bulkhead labels.
    LabelMaps(LabelMapsArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum LabelsCommand {
    /// List labels, with what uses each.
    List {
        /// Only labels of this key.
        #[arg(long)]
        key: Option<String>,
        /// Only values containing this (case-insensitive).
        #[arg(long)]
        value: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Create a label.
    Create {
        /// KEY=VALUE, e.g. role=web.
        label: String,
    },
    /// Give a label a new value: whatever carries it carries the new one.
    Rename {
        /// The label: KEY=VALUE, its id or its href.
        label: String,
        value: String,
    },
    /// Delete a label nothing uses.
    Delete {
        /// The label: KEY=VALUE, its id or its href.
        label: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DimensionsCommand {
    /// List the label dimensions: the built-in role, app, env and loc, and those added.
    List,
    /// Add a label dimension.
    Create {
        /// Lowercase letters, digits, '_' and '-', starting with a letter.
        key: String,
        /// How people call it [default: the key].
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Delete a label dimension nothing uses.
    Delete { key: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List label groups.
    List {
        /// Only groups of this key.
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one label group.
    Get {
        /// The group: KEY=NAME, its id or its href.
        group: String,
    },
    /// Create a label group.
    Create {
        /// KEY=NAME, e.g. env=Non-prod.
        group: String,
        /// A member: a label value of the key (repeatable).
        #[arg(long = "label", value_name = "VALUE")]
        labels: Vec<String>,
        /// A member group: a group name of the key (repeatable).
        #[arg(long = "sub-group", value_name = "NAME")]
        sub_groups: Vec<String>,
    },
    /// Rename a label group or replace its members.
    Update {
        /// The group: KEY=NAME, its id or its href.
        group: String,
        #[arg(long)]
        name: Option<String>,
        /// The new member labels, by value ('' for none).
        #[arg(long, value_delimiter = ',', value_name = "VALUE,...")]
        labels: Option<Vec<String>>,
        /// The new member groups, by name ('' for none).
        #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
        sub_groups: Option<Vec<String>>,
    },
    /// Delete a label group no profile, template or other group uses.
    Delete {
        /// The group: KEY=NAME, its id or its href.
        group: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct ProfilesArgs {
    /// The container cluster (id).
    #[arg(long)]
    cluster: String,
    #[command(subcommand)]
    command: ProfileCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ProfileCommand {
    /// List the profiles: one per namespace, and the pre-created ones still pending.
    List {
        /// Only the profile of this namespace.
        #[arg(long)]
        namespace: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one profile.
    Get {
        /// Its id (from the list) or its href.
        profile: String,
    },
    /// Pre-create a profile: prints its pairing key (shown this once); a namespace annotated
    /// with `bulkhead.io/pairing-key: <key>` gets it.
    Create {
        /// 1 to 255 characters.
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Change a profile: what is given changes, the rest stays.
    Update {
        /// Its id (from the list) or its href.
        profile: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete a pre-created profile (its namespace, if any, gets one from the template).
    Delete {
        /// Its id (from the list) or its href.
        profile: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct TemplateArgs {
    /// The container cluster (id).
    #[arg(long)]
    cluster: String,
    #[command(subcommand)]
    command: TemplateCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TemplateCommand {
    /// Show the template.
    Get,
    /// Change the template: what is given changes, the rest stays.
    Set(SettingsArgs),
}

/// What a profile or template decides for its namespaces' workloads.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    /// Whether the workloads get labels and policy at all.
    #[arg(long)]
    managed: Option<bool>,
    /// How the workloads are enforced.
    #[arg(long, value_enum)]
    enforcement_mode: Option<EnforcementMode>,
    /// Fix KEY to one label, whatever annotations say (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    assign: Vec<String>,
    /// Let annotations choose KEY's label among these only: label values and `group:NAME`s,
    /// comma-separated; `KEY=` allows no label of KEY at all (repeatable).
    #[arg(long, value_name = "KEY=VALUE,...")]
    restrict: Vec<String>,
    /// Let annotations choose any label of KEY: drops KEY's rule (repeatable).
    #[arg(long, value_name = "KEY")]
    from_annotations: Vec<String>,
}

/// How a profile's workloads are enforced.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum EnforcementMode {
    /// No policy programmed.
    Idle,
    /// Traffic observed, nothing blocked.
    #[value(name = "visibility_only")]
    VisibilityOnly,
    /// What would be blocked is flagged, nothing blocked.
    Test,
    /// Policy enforced.
    Full,
}

#[derive(Debug, clap::Args)]
pub struct LabelMapsArgs {
    /// The container cluster (id).
    #[arg(long)]
    cluster: String,
    #[command(subcommand)]
    command: LabelMapCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LabelMapCommand {
    /// List the label maps in the order they apply: the cluster's LabelMap custom resources,
    /// then those defined here.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a label map defined here.
    Get { name: String },
    /// Create or replace a label map from a file.
    Put {
        name: String,
        /// YAML or JSON: `{node_label_map: [...], workload_label_map: [...]}`, each rule
        /// `{from_key, to_key, values_map: [{from, to}], allow_create}` (the last two optional).
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a label map defined here.
    Delete { name: String },
}

pub async fn run(
    client: &Client,
    output: Output,
    command: LabelingCommand,
) -> anyhow::Result<ExitCode> {
    let view = View { client, output };
    match command {
        LabelingCommand::Labels(command) => labels(&view, command).await?,
        LabelingCommand::LabelDimensions(command) => dimensions(&view, command).await?,
        LabelingCommand::LabelGroups(command) => groups(&view, command).await?,
        LabelingCommand::Profiles(args) => profiles(&view, args).await?,
        LabelingCommand::ProfileTemplate(args) => template(&view, args).await?,
        LabelingCommand::LabelMaps(args) => label_maps(&view, args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

// --- commands ---------------------------------------------------------------------------

async fn labels(view: &View<'_>, command: LabelsCommand) -> anyhow::Result<()> {
    let client = view.client;
    match command {
        LabelsCommand::List { key, value, page } => {
            let filters = [("key", key.as_deref()), ("value", value.as_deref())];
            let answer = view.get(&with_query(LABELS, &filters, &page)).await?;
            view.labels(&answer)
        }
        LabelsCommand::Create { label } => {
            let (key, value) = key_value(&label)?;
            let body = json!({ "key": key, "value": value });
            let created = client.call(Method::POST, LABELS, Some(&body)).await?;
            view.labels(&created)
        }
        LabelsCommand::Rename { label, value } => {
            let path = label_path(client, &label).await?;
            let body = json!({ "value": value });
            client.call(Method::PUT, &path, Some(&body)).await?;
            view.labels(&view.get(&path).await?)
        }
        LabelsCommand::Delete { label } => {
            let path = label_path(client, &label).await?;
            view.delete(&path, &format!("label {label}")).await
        }
    }
}

async fn dimensions(view: &View<'_>, command: DimensionsCommand) -> anyhow::Result<()> {
    let columns = [
        ("KEY", "key"),
        ("DISPLAY NAME", "display_name"),
        ("BUILT-IN", "builtin"),
    ];
    match command {
        DimensionsCommand::List => {
            let answer = view
                .get(&with_query(DIMENSIONS, &[], &PageArgs::LARGEST))
                .await?;
            view.table(&answer, &columns, Value::clone)
        }
        DimensionsCommand::Create { key, display_name } => {
            let body = json!({ "key": key, "display_name": display_name });
            let created = view
                .client
                .call(Method::POST, DIMENSIONS, Some(&body))
                .await?;
            view.table(&created, &columns, Value::clone)
        }
        DimensionsCommand::Delete { key } => {
            let path = format!("{DIMENSIONS}/{}", path_segment(&key));
            view.delete(&path, &format!("label dimension {key}")).await
        }
    }
}

async fn groups(view: &View<'_>, command: GroupsCommand) -> anyhow::Result<()> {
    let client = view.client;
    match command {
        GroupsCommand::List { key, page } => {
            let filters = [("key", key.as_deref())];
            let answer = view.get(&with_query(GROUPS, &filters, &page)).await?;
            view.groups(&answer).await
        }
        GroupsCommand::Get { group } => {
            let path = group_path(client, &group).await?;
            view.groups(&view.get(&path).await?).await
        }
        GroupsCommand::Create {
            group,
            labels,
            sub_groups,
        } => {
            let (key, name) = key_value(&group)?;
            let body = json!({
                "key": key,
                "name": name,
                "labels": member_hrefs(client, key, &labels, Member::Label).await?,
                "sub_groups": member_hrefs(client, key, &sub_groups, Member::Group).await?,
            });
            let created = client.call(Method::POST, GROUPS, Some(&body)).await?;
            view.groups(&created).await
        }
        GroupsCommand::Update {
            group,
            name,
            labels,
            sub_groups,
        } => {
            let path = group_path(client, &group).await?;
            let current = view.get(&path).await?;
            let key = text(&current["key"]);
            let mut changes = Map::new();
            if let Some(name) = name {
                changes.insert("name".into(), name.into());
            }
            if let Some(labels) = labels {
                let hrefs = member_hrefs(client, &key, &labels, Member::Label).await?;
                changes.insert("labels".into(), hrefs.into());
            }
            if let Some(sub_groups) = sub_groups {
                let hrefs = member_hrefs(client, &key, &sub_groups, Member::Group).await?;
                changes.insert("sub_groups".into(), hrefs.into());
            }
            client
                .call(Method::PUT, &path, Some(&Value::Object(changes)))
                .await?;
            view.groups(&view.get(&path).await?).await
        }
        GroupsCommand::Delete { group } => {
            let path = group_path(client, &group).await?;
            view.delete(&path, &format!("label group {group}")).await
        }
    }
}

async fn profiles(view: &View<'_>, args: ProfilesArgs) -> anyhow::Result<()> {
    let client = view.client;
    let all = format!(
        "/orgs/1/container_clusters/{}/container_workload_profiles",
        path_segment(&args.cluster)
    );
    let one = |profile: &str| by_id(&all, profile);
    match args.command {
        ProfileCommand::List { namespace, page } => {
            let filters = [("namespace", namespace.as_deref())];
            let answer = view.get(&with_query(&all, &filters, &page)).await?;
            view.profiles(&answer).await
        }
        ProfileCommand::Get { profile } => view.profiles(&view.get(&one(&profile)).await?).await,
        ProfileCommand::Create { name, settings } => {
            let mut body = settings.changes(client, &json!([])).await?;
            body.insert("name".into(), name.into());
            let created = client
                .call(Method::POST, &all, Some(&Value::Object(body)))
                .await?;
            view.profiles(&created).await?;
            if view.output == Output::Table {
                out!(
                    "pairing key: {}   (shown this once: annotate the namespace with \
                     bulkhead.io/pairing-key: <key>)",
                    text(&created["pairing_key"])
                );
            }
            Ok(())
        }
        ProfileCommand::Update {
            profile,
            name,
            settings,
        } => {
            let path = one(&profile);
            // Rules are replaced as a whole: the keys not given keep theirs.
            let current_rules = if settings.changes_rules() {
                view.get(&path).await?["labels"].take()
            } else {
                Value::Null
            };
            let mut changes = settings.changes(client, &current_rules).await?;
            if let Some(name) = name {
                changes.insert("name".into(), name.into());
            }
            client
                .call(Method::PUT, &path, Some(&Value::Object(changes)))
                .await?;
            view.profiles(&view.get(&path).await?).await
        }
        ProfileCommand::Delete { profile } => {
            view.delete(&one(&profile), &format!("profile {profile}"))
                .await
        }
    }
}

async fn template(view: &View<'_>, args: TemplateArgs) -> anyhow::Result<()> {
    let path = format!(
        "/orgs/1/container_clusters/{}/container_workload_profile_template",
        path_segment(&args.cluster)
    );
    let current = view.get(&path).await?;
    let TemplateCommand::Set(settings) = args.command else {
        return view.profiles(&current).await;
    };
    // The API replaces the whole template: start from what it is.
    let mut body = Map::new();
    for field in ["managed", "enforcement_mode", "labels"] {
        body.insert(field.into(), current[field].clone());
    }
    body.extend(settings.changes(view.client, &current["labels"]).await?);
    view.client
        .call(Method::PUT, &path, Some(&Value::Object(body)))
        .await?;
    view.profiles(&view.get(&path).await?).await
}

async fn label_maps(view: &View<'_>, args: LabelMapsArgs) -> anyhow::Result<()> {
    let all = format!(
        "/orgs/1/container_clusters/{}/label_maps",
        path_segment(&args.cluster)
    );
    let one = |name: &str| format!("{all}/{}", path_segment(name));
    match args.command {
        LabelMapCommand::List { page } => {
            let answer = view.get(&with_query(&all, &[], &page)).await?;
            view.label_maps(&answer)
        }
        LabelMapCommand::Get { name } => view.label_maps(&view.get(&one(&name)).await?),
        LabelMapCommand::Put { name, file } => {
            let rules = read_rules(&file)?;
            view.client
                .call(Method::PUT, &one(&name), Some(&rules))
                .await?;
            view.label_maps(&view.get(&one(&name)).await?)
        }
        LabelMapCommand::Delete { name } => {
            view.delete(&one(&name), &format!("label map {name}")).await
        }
    }
}

// --- names and references ---------------------------------------------------------------

/// `KEY=VALUE` split at the first `=` (keys have none).
fn key_value(text: &str) -> anyhow::Result<(&str, &str)> {
    text.split_once('=')
        .ok_or_else(|| anyhow!("expected KEY=VALUE, got {text:?}"))
}

/// The path of a resource of `collection` given by its id or its href.
fn by_id(collection: &str, reference: &str) -> String {
    let id = reference.rsplit('/').next().unwrap_or(reference);
    format!("{collection}/{}", path_segment(id))
}

/// A label given as `KEY=VALUE`, its id or its href: its path.
async fn label_path(client: &Client, label: &str) -> anyhow::Result<String> {
    match label.split_once('=') {
        Some((key, value)) => find_label(client, key, value).await,
        None => Ok(by_id(LABELS, label)),
    }
}

/// A label group given as `KEY=NAME`, its id or its href: its path.
async fn group_path(client: &Client, group: &str) -> anyhow::Result<String> {
    match group.split_once('=') {
        Some((key, name)) => find_group(client, key, name).await,
        None => Ok(by_id(GROUPS, group)),
    }
}

/// The entries of the first (largest) page of a list.
async fn entries(
    client: &Client,
    collection: &str,
    filters: &[(&str, Option<&str>)],
) -> anyhow::Result<Vec<Value>> {
    let path = with_query(collection, filters, &PageArgs::LARGEST);
    match client.call(Method::GET, &path, None).await? {
        Value::Array(entries) => Ok(entries),
        other => bail!("{collection} answered no list: {other}"),
    }
}

/// The entry whose `field` is `name`, ignoring case as label values and group names are
/// unique ignoring case; its href.
fn href_named(entries: &[Value], field: &str, name: &str) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e[field]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case(name))
        })
        .map(|e| text(&e["href"]))
}

/// The href of the label `key=value`.
async fn find_label(client: &Client, key: &str, value: &str) -> anyhow::Result<String> {
    let labels = entries(
        client,
        LABELS,
        &[("key", Some(key)), ("value", Some(value))],
    )
    .await?;
    href_named(&labels, "value", value).ok_or_else(|| {
        anyhow!("there is no label {key}={value} (bulkhead labels create {key}={value})")
    })
}

/// The href of the label group `name` of `key`.
async fn find_group(client: &Client, key: &str, name: &str) -> anyhow::Result<String> {
    let groups = entries(client, GROUPS, &[("key", Some(key))]).await?;
    href_named(&groups, "name", name)
        .ok_or_else(|| anyhow!("there is no {key} label group named {name:?}"))
}

/// A restriction's member: a label value, or `group:NAME`.
async fn member_href(client: &Client, key: &str, member: &str) -> anyhow::Result<String> {
    match member.strip_prefix("group:") {
        Some(name) => find_group(client, key, name).await,
        None => find_label(client, key, member).await,
    }
}

/// What a label group holds.
#[derive(Debug, Clone, Copy)]
enum Member {
    Label,
    Group,
}

/// `[{href}]` of the named members of `key` (blank names skipped, so that `''` means none).
async fn member_hrefs(
    client: &Client,
    key: &str,
    names: &[String],
    kind: Member,
) -> anyhow::Result<Vec<Value>> {
    let mut hrefs = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let href = match kind {
            Member::Label => find_label(client, key, name).await?,
            Member::Group => find_group(client, key, name).await?,
        };
        hrefs.push(json!({ "href": href }));
    }
    Ok(hrefs)
}

impl SettingsArgs {
    fn changes_rules(&self) -> bool {
        !(self.assign.is_empty() && self.restrict.is_empty() && self.from_annotations.is_empty())
    }

    /// The settings given, as the fields of a request; label rules start from
    /// `current_rules` and change only for the keys given.
    async fn changes(
        &self,
        client: &Client,
        current_rules: &Value,
    ) -> anyhow::Result<Map<String, Value>> {
        let mut changes = Map::new();
        if let Some(managed) = self.managed {
            changes.insert("managed".into(), managed.into());
        }
        if let Some(mode) = self.enforcement_mode {
            let name = mode.to_possible_value().expect("no mode is skipped");
            changes.insert("enforcement_mode".into(), name.get_name().into());
        }
        if self.changes_rules() {
            let rules = self.rules(client, current_rules).await?;
            changes.insert("labels".into(), rules.into());
        }
        Ok(changes)
    }

    async fn rules(&self, client: &Client, current: &Value) -> anyhow::Result<Vec<Value>> {
        let mut rules: BTreeMap<String, Value> = current
            .as_array()
            .into_iter()
            .flatten()
            .map(|rule| (text(&rule["key"]), rule.clone()))
            .collect();
        let assignments = self.assign.iter().map(|a| key_value(a));
        let restrictions = self.restrict.iter().map(|r| key_value(r));
        let assignments: Vec<(&str, &str)> = assignments.collect::<Result<_, _>>()?;
        let restrictions: Vec<(&str, &str)> = restrictions.collect::<Result<_, _>>()?;
        let mut given = BTreeSet::new();
        let keys = assignments.iter().chain(&restrictions).map(|(key, _)| *key);
        if let Some(twice) = keys
            .chain(self.from_annotations.iter().map(String::as_str))
            .find(|key| !given.insert(*key))
        {
            bail!("{twice} is given twice: a key has one rule");
        }
        for (key, value) in assignments {
            let href = find_label(client, key, value).await?;
            let rule = json!({ "key": key, "assignment": { "href": href } });
            rules.insert(key.to_owned(), rule);
        }
        for (key, members) in restrictions {
            let mut hrefs = Vec::new();
            for member in members.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                hrefs.push(json!({ "href": member_href(client, key, member).await? }));
            }
            let rule = json!({ "key": key, "restriction": hrefs });
            rules.insert(key.to_owned(), rule);
        }
        for key in &self.from_annotations {
            rules.remove(key);
        }
        Ok(rules.into_values().collect())
    }
}

/// A label map's rules from a YAML or JSON file (JSON is YAML).
fn read_rules(file: &std::path::Path) -> anyhow::Result<Value> {
    let content =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let rules: Value = serde_saphyr::from_str(&content)
        .with_context(|| format!("{} is neither YAML nor JSON", file.display()))?;
    if !rules.is_object() {
        bail!(
            "{} holds no map: expected node_label_map and workload_label_map",
            file.display()
        );
    }
    Ok(rules)
}

// --- output -----------------------------------------------------------------------------

/// How the answers are shown.
struct View<'a> {
    client: &'a Client,
    output: Output,
}

/// What hrefs stand for in a table: label values and group names.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn of(&self, reference: &Value) -> String {
        let href = text(&reference["href"]);
        self.0.get(&href).cloned().unwrap_or(href)
    }

    fn all_of(&self, references: &Value) -> String {
        let names: Vec<String> = references
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| self.of(r))
            .collect();
        joined_or_dash(&names, ", ")
    }
}

/// Every `key` field in `value`: the label keys whose labels and groups a table names.
fn keys_in(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            for (field, inner) in fields {
                match (field.as_str(), inner.as_str()) {
                    ("key", Some(key)) => {
                        keys.insert(key.to_owned());
                    }
                    _ => keys_in(inner, keys),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| keys_in(item, keys)),
        _ => {}
    }
}

/// A list's entries, or the one resource.
fn rows_of(answer: &Value) -> Vec<&Value> {
    match answer.as_array() {
        Some(entries) => entries.iter().collect(),
        None => vec![answer],
    }
}

/// `parts` joined, or `-` for none.
fn joined_or_dash(parts: &[String], separator: &str) -> String {
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(separator)
    }
}

fn or_dash(value: &Value) -> Value {
    match value {
        Value::Null => "-".into(),
        other => other.clone(),
    }
}

/// A profile's or template's label rules, e.g. `env=prod; role in (web, Front); app: none`.
fn rules_text(rules: &Value, names: &Names) -> String {
    let rules: Vec<String> = rules
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            let key = text(&rule["key"]);
            match rule["restriction"].as_array() {
                None => format!("{key}={}", names.of(&rule["assignment"])),
                Some(members) if members.is_empty() => format!("{key}: none"),
                Some(_) => format!("{key} in ({})", names.all_of(&rule["restriction"])),
            }
        })
        .collect();
    joined_or_dash(&rules, "; ")
}

/// What uses a label, e.g. `2 profiles, 5 workloads`.
fn usage_text(usage: &Value) -> String {
    let uses: Vec<String> = [
        ("profiles", "profiles"),
        ("label_groups", "label groups"),
        ("label_maps", "label map rules"),
        ("entities", "workloads"),
    ]
    .iter()
    .filter_map(|(field, what)| match usage[*field].as_u64() {
        Some(0) | None => None,
        Some(n) => Some(format!("{n} {what}")),
    })
    .collect();
    joined_or_dash(&uses, ", ")
}

/// A label map's rules, e.g. `app.kubernetes.io/name -> app, zone -> loc (2 values, creates)`.
fn map_rules_text(rules: &Value) -> String {
    let rules: Vec<String> = rules
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| {
            let mut notes = Vec::new();
            if let Some(values) = rule["values_map"].as_array() {
                notes.push(format!("{} values", values.len()));
            }
            if rule["allow_create"] == true {
                notes.push("creates".to_owned());
            }
            let mut line = format!("{} -> {}", text(&rule["from_key"]), text(&rule["to_key"]));
            if !notes.is_empty() {
                line.push_str(&format!(" ({})", notes.join(", ")));
            }
            line
        })
        .collect();
    joined_or_dash(&rules, ", ")
}

impl View<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.client.call(Method::GET, path, None).await
    }

    async fn delete(&self, path: &str, what: &str) -> anyhow::Result<()> {
        self.client.call(Method::DELETE, path, None).await?;
        if self.output == Output::Table {
            out!("deleted {what}");
        }
        Ok(())
    }

    /// Prints `answer` (a list or one resource) as a table of `columns` over rows made by
    /// `row`, or as JSON.
    fn table(
        &self,
        answer: &Value,
        columns: &[(&str, &str)],
        row: impl Fn(&Value) -> Value,
    ) -> anyhow::Result<()> {
        let rows: Vec<Value> = rows_of(answer).into_iter().map(row).collect();
        print(self.output, answer, &rows, columns)
    }

    /// The names of the labels and groups of the keys `answer` mentions, for a table; none
    /// for JSON, which shows hrefs as they are.
    async fn names(&self, answer: &Value) -> anyhow::Result<Names> {
        let mut names = Names::default();
        if self.output == Output::Json {
            return Ok(names);
        }
        let mut keys = BTreeSet::new();
        keys_in(answer, &mut keys);
        for key in keys {
            let filters = [("key", Some(key.as_str()))];
            for label in entries(self.client, LABELS, &filters).await? {
                names.0.insert(text(&label["href"]), text(&label["value"]));
            }
            for group in entries(self.client, GROUPS, &filters).await? {
                names.0.insert(text(&group["href"]), text(&group["name"]));
            }
        }
        Ok(names)
    }

    fn labels(&self, answer: &Value) -> anyhow::Result<()> {
        let columns = [
            ("ID", "id"),
            ("KEY", "key"),
            ("VALUE", "value"),
            ("CREATED BY", "created_by"),
            ("USED BY", "used_by"),
        ];
        self.table(answer, &columns, |label| {
            let mut row = label.clone();
            row["used_by"] = usage_text(&label["usage"]).into();
            row
        })
    }

    async fn groups(&self, answer: &Value) -> anyhow::Result<()> {
        let names = self.names(answer).await?;
        let columns = [
            ("ID", "id"),
            ("KEY", "key"),
            ("NAME", "name"),
            ("LABELS", "labels"),
            ("SUB-GROUPS", "sub_groups"),
        ];
        self.table(answer, &columns, |group| {
            let mut row = group.clone();
            row["labels"] = names.all_of(&group["labels"]).into();
            row["sub_groups"] = names.all_of(&group["sub_groups"]).into();
            row
        })
    }

    /// Profiles, or a template (which has no id, name, namespace or state).
    async fn profiles(&self, answer: &Value) -> anyhow::Result<()> {
        let names = self.names(answer).await?;
        let profile_columns = [
            ("ID", "id"),
            ("NAME", "name"),
            ("NAMESPACE", "namespace"),
            ("STATE", "state"),
        ];
        let settings_columns = [
            ("MANAGED", "managed"),
            ("MODE", "enforcement_mode"),
            ("LABEL RULES", "rules"),
        ];
        let is_template = answer.is_object() && answer.get("id").is_none();
        let columns: Vec<(&str, &str)> = if is_template {
            settings_columns.to_vec()
        } else {
            profile_columns
                .iter()
                .chain(&settings_columns)
                .copied()
                .collect()
        };
        self.table(answer, &columns, |profile| {
            let mut row = profile.clone();
            row["namespace"] = or_dash(&profile["namespace"]);
            row["rules"] = rules_text(&profile["labels"], &names).into();
            row
        })
    }

    fn label_maps(&self, answer: &Value) -> anyhow::Result<()> {
        let columns = [
            ("NAME", "name"),
            ("ORIGIN", "origin"),
            ("NODE RULES", "node_rules"),
            ("WORKLOAD RULES", "workload_rules"),
        ];
        self.table(answer, &columns, |map| {
            let mut row = map.clone();
            row["node_rules"] = map_rules_text(&map["spec"]["node_label_map"]).into();
            row["workload_rules"] = map_rules_text(&map["spec"]["workload_label_map"]).into();
            row
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_paths() {
        assert_eq!(by_id(LABELS, "7"), "/orgs/1/labels/7");
        assert_eq!(by_id(LABELS, "/orgs/1/labels/7"), "/orgs/1/labels/7");
        assert_eq!(key_value("env=a=b").unwrap(), ("env", "a=b"));
        assert!(key_value("env").is_err());
    }

    #[test]
    fn rules_read_as_people_name_them() {
        let names = Names(HashMap::from([
            ("/orgs/1/labels/1".to_owned(), "prod".to_owned()),
            ("/orgs/1/label_groups/2".to_owned(), "Front".to_owned()),
        ]));
        let rules = json!([
            { "key": "env", "assignment": { "href": "/orgs/1/labels/1" } },
            { "key": "role", "restriction": [
                { "href": "/orgs/1/labels/9" }, { "href": "/orgs/1/label_groups/2" },
            ] },
            { "key": "app", "restriction": [] },
        ]);
        assert_eq!(
            rules_text(&rules, &names),
            "env=prod; role in (/orgs/1/labels/9, Front); app: none"
        );
        assert_eq!(rules_text(&json!([]), &names), "-");
        let mut keys = BTreeSet::new();
        keys_in(&json!([{ "labels": rules }, { "key": "loc" }]), &mut keys);
        assert_eq!(
            keys,
            BTreeSet::from(["app", "env", "loc", "role"].map(String::from))
        );
    }

    #[test]
    fn usage_and_map_rules_are_summed_up() {
        let usage = json!({ "profiles": 2, "label_groups": 0, "label_maps": 0, "entities": 5 });
        assert_eq!(usage_text(&usage), "2 profiles, 5 workloads");
        assert_eq!(usage_text(&json!({ "profiles": 0 })), "-");
        let rules = json!([
            { "from_key": "zone", "to_key": "loc", "values_map": [{ "from": "a", "to": "b" }],
              "allow_create": true },
            { "from_key": "app.kubernetes.io/name", "to_key": "app", "allow_create": false },
        ]);
        assert_eq!(
            map_rules_text(&rules),
            "zone -> loc (1 values, creates), app.kubernetes.io/name -> app"
        );
    }
}
