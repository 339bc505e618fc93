//! Who may do what: users' roles, the owners of exchanges, queues and topics, and the grants
//! owners and admins give, all kept in ZooKeeper under `/mom/access`, and a watched
//! in-memory copy ([`AccessCache`]) that the gateway and the nodes check on every request.
//!
//! Layout:
//! - `users/<name>`: a [`UserRecord`] (JSON), written by the auth service. A user exists for
//!   the rest of the cluster exactly while this znode does; tokens name the record's
//!   generation, so deleting a user (or re-creating one of the same name) voids its tokens.
//! - `owners/<kind>/<name>`: the owner's user name, created in one transaction with the
//!   resource itself.
//! - `grants/g-<sequence>`: a [`Grant`] (JSON).
//!
//! The rules, in the spirit of RabbitMQ's configure/write/read permissions:
//! - admins may do everything;
//! - the owner of a resource may do everything with it;
//! - a grant gives its user some permissions on the resources whose names match its pattern
//!   (`*` any run of characters, `?` one), but only on those its granter may still vouch
//!   for: every such resource if the granter is an admin, else the ones the granter owns.
//!
//! A check the cache denies is asked again after a reload that started after the check did,
//! so a grant or a declare acknowledged to anyone before a request starts is honoured even if
//! this process's watch event is still on its way. Only denials pay for that.

use crate::{Catalog, Result};
pub use mom_common::access::{Permission, ResourceKind, Role};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, RwLock, RwLockReadGuard,
};
use std::time::Duration;
use zookeeper_client::{
    AddWatchMode, Client, CreateMode, Error as ZkError, EventType, SessionState,
};

pub const ACCESS: &str = "/mom/access";
pub const USERS: &str = "/mom/access/users";
pub const OWNERS: &str = "/mom/access/owners";
pub const GRANTS: &str = "/mom/access/grants";

/// Every znode this module needs, parents first (see `Catalog::ensure_layout`).
pub(crate) fn layout() -> Vec<String> {
    let mut paths = vec![ACCESS.to_owned(), USERS.to_owned(), OWNERS.to_owned()];
    paths.extend(ResourceKind::ALL.iter().map(|k| format!("{OWNERS}/{k}")));
    paths.push(GRANTS.to_owned());
    paths
}

/// What the cluster knows of a user (the password stays in the auth service's database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub role: Role,
    /// Unique per creation of a user of this name; tokens carry it.
    pub generation: u64,
    /// Tokens issued before this time (seconds since the epoch) are void: a password reset
    /// or an explicit revocation moves it.
    #[serde(default)]
    pub tokens_after: u64,
}

impl UserRecord {
    /// Whether a token with these claims still stands for this user.
    pub fn accepts(&self, generation: u64, issued_at: u64) -> bool {
        generation == self.generation && issued_at >= self.tokens_after
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who receives the permissions.
    pub user: String,
    pub kind: ResourceKind,
    /// A resource name, or a pattern with `*` and `?`.
    pub pattern: String,
    pub permissions: Vec<Permission>,
    pub granted_by: String,
}

/// Whether `name` matches a grant's pattern.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    wildmatch::WildMatch::new(pattern).matches(name)
}

/// One consistent snapshot of users, owners and grants.
#[derive(Debug, Default, Clone)]
pub struct AccessView {
    users: HashMap<String, UserRecord>,
    owners: HashMap<(ResourceKind, String), String>,
    grants: BTreeMap<String, Grant>,
}

impl AccessView {
    pub fn user(&self, name: &str) -> Option<&UserRecord> {
        self.users.get(name)
    }

    pub fn is_admin(&self, name: &str) -> bool {
        self.users.get(name).is_some_and(|u| u.role == Role::Admin)
    }

    pub fn owner(&self, kind: ResourceKind, name: &str) -> Option<&str> {
        self.owners
            .get(&(kind, name.to_owned()))
            .map(String::as_str)
    }

    /// Whether `user` may exercise `permission` on resource `kind`/`name`.
    pub fn allows(
        &self,
        user: &str,
        kind: ResourceKind,
        name: &str,
        permission: Permission,
    ) -> bool {
        if !self.users.contains_key(user) {
            return false;
        }
        if self.is_admin(user) {
            return true;
        }
        let owner = self.owner(kind, name);
        if owner == Some(user) {
            return true;
        }
        self.grants.values().any(|grant| {
            grant.user == user
                && grant.kind == kind
                && grant.permissions.contains(&permission)
                && pattern_matches(&grant.pattern, name)
                && (self.is_admin(&grant.granted_by) || owner == Some(grant.granted_by.as_str()))
        })
    }

    /// Whether `user` may do anything at all with the resource (what listings show).
    pub fn sees(&self, user: &str, kind: ResourceKind, name: &str) -> bool {
        [Permission::Configure, Permission::Write, Permission::Read]
            .into_iter()
            .any(|p| self.allows(user, kind, name, p))
    }

    /// Grants, by id.
    pub fn grants(&self) -> &BTreeMap<String, Grant> {
        &self.grants
    }

    fn apply(&mut self, path: &str, data: Option<&[u8]>) {
        let Some(rest) = path.strip_prefix(ACCESS) else {
            return;
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["users", name] => match data.and_then(|d| serde_json::from_slice(d).ok()) {
                Some(record) => {
                    self.users.insert((*name).to_owned(), record);
                }
                None => {
                    self.users.remove(*name);
                }
            },
            ["owners", kind, name] => {
                let Ok(kind) = kind.parse::<ResourceKind>() else {
                    return;
                };
                let key = (kind, (*name).to_owned());
                match data.map(|d| String::from_utf8_lossy(d).into_owned()) {
                    Some(owner) if !owner.is_empty() => {
                        self.owners.insert(key, owner);
                    }
                    _ => {
                        self.owners.remove(&key);
                    }
                }
            }
            ["grants", id] => match data.and_then(|d| serde_json::from_slice(d).ok()) {
                Some(grant) => {
                    self.grants.insert((*id).to_owned(), grant);
                }
                None => {
                    self.grants.remove(*id);
                }
            },
            _ => {}
        }
    }
}

/// The znode recording `kind`/`name`'s owner (created with the resource by the catalog).
pub(crate) fn owner_znode(kind: ResourceKind, name: &str) -> String {
    format!("{OWNERS}/{kind}/{name}")
}

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    crate::session::create_options(CreateMode::Persistent)
}

fn corrupt(path: &str, e: impl fmt::Display) -> crate::CatalogError {
    crate::CatalogError::Corrupt {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

// ---- users (written by the auth service) ----

/// Publishes a new user; false if one of that name exists.
pub async fn create_user(zk: &Client, name: &str, record: &UserRecord) -> Result<bool> {
    let data = serde_json::to_vec(record).map_err(|e| corrupt(name, e))?;
    match zk
        .create(&format!("{USERS}/{name}"), &data, &persistent())
        .await
    {
        Ok(_) => Ok(true),
        Err(ZkError::NodeExists) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn read_user(zk: &Client, name: &str) -> Result<Option<UserRecord>> {
    let path = format!("{USERS}/{name}");
    match zk.get_data(&path).await {
        Ok((data, _)) => Ok(Some(
            serde_json::from_slice(&data).map_err(|e| corrupt(&path, e))?,
        )),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Changes a user's record by compare-and-set; `None` if there is no such user.
pub async fn update_user(
    zk: &Client,
    name: &str,
    change: impl Fn(&mut UserRecord),
) -> Result<Option<UserRecord>> {
    let path = format!("{USERS}/{name}");
    loop {
        let (data, stat) = match zk.get_data(&path).await {
            Ok(found) => found,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut record: UserRecord =
            serde_json::from_slice(&data).map_err(|e| corrupt(&path, e))?;
        change(&mut record);
        let data = serde_json::to_vec(&record).map_err(|e| corrupt(&path, e))?;
        match zk.set_data(&path, &data, Some(stat.version)).await {
            Ok(_) => return Ok(Some(record)),
            Err(ZkError::BadVersion) => continue,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every published user.
pub async fn list_users(zk: &Client) -> Result<Vec<(String, UserRecord)>> {
    let mut names = zk.list_children(USERS).await?;
    names.sort();
    let mut users = Vec::new();
    for name in names {
        if let Some(record) = read_user(zk, &name).await? {
            users.push((name, record));
        }
    }
    Ok(users)
}

/// Removes a user from the cluster: its record (which voids its tokens at once), the grants
/// it gave or got, and its ownerships (its resources stay, for admins to manage). False if
/// there was no such user.
pub async fn delete_user(zk: &Client, name: &str) -> Result<bool> {
    let existed = match zk.delete(&format!("{USERS}/{name}"), None).await {
        Ok(()) => true,
        Err(ZkError::NoNode) => false,
        Err(e) => return Err(e.into()),
    };
    for (id, grant) in list_grants(zk).await? {
        if grant.user == name || grant.granted_by == name {
            delete_grant(zk, &id).await?;
        }
    }
    for kind in ResourceKind::ALL {
        let dir = format!("{OWNERS}/{kind}");
        for resource in zk.list_children(&dir).await? {
            let path = format!("{dir}/{resource}");
            match zk.get_data(&path).await {
                Ok((data, stat)) if data == name.as_bytes() => {
                    match zk.delete(&path, Some(stat.version)).await {
                        Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(_) | Err(ZkError::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(existed)
}

// ---- grants ----

/// Records a grant; returns its id.
pub async fn add_grant(zk: &Client, grant: &Grant) -> Result<String> {
    let data = serde_json::to_vec(grant).map_err(|e| corrupt(GRANTS, e))?;
    let options = crate::session::create_options(CreateMode::PersistentSequential);
    let (_, sequence) = zk.create(&format!("{GRANTS}/g-"), &data, &options).await?;
    Ok(format!("g-{sequence}"))
}

pub async fn list_grants(zk: &Client) -> Result<Vec<(String, Grant)>> {
    let mut ids = zk.list_children(GRANTS).await?;
    ids.sort();
    let mut grants = Vec::new();
    for id in ids {
        let path = format!("{GRANTS}/{id}");
        match zk.get_data(&path).await {
            Ok((data, _)) => grants.push((
                id,
                serde_json::from_slice(&data).map_err(|e| corrupt(&path, e))?,
            )),
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(grants)
}

pub async fn read_grant(zk: &Client, id: &str) -> Result<Option<Grant>> {
    let path = format!("{GRANTS}/{id}");
    match zk.get_data(&path).await {
        Ok((data, _)) => Ok(Some(
            serde_json::from_slice(&data).map_err(|e| corrupt(&path, e))?,
        )),
        Err(ZkError::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// False if there was no such grant.
pub async fn delete_grant(zk: &Client, id: &str) -> Result<bool> {
    match zk.delete(&format!("{GRANTS}/{id}"), None).await {
        Ok(()) => Ok(true),
        Err(ZkError::NoNode) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

// ---- the cache ----

/// Reads everything under `/mom/access`.
async fn read_view(zk: &Client) -> Result<AccessView> {
    let mut view = AccessView::default();
    for name in zk.list_children(USERS).await? {
        let path = format!("{USERS}/{name}");
        match zk.get_data(&path).await {
            Ok((data, _)) => view.apply(&path, Some(&data)),
            Err(ZkError::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for kind in ResourceKind::ALL {
        let dir = format!("{OWNERS}/{kind}");
        for name in zk.list_children(&dir).await? {
            let path = format!("{dir}/{name}");
            match zk.get_data(&path).await {
                Ok((data, _)) => view.apply(&path, Some(&data)),
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    view.grants = list_grants(zk).await?.into_iter().collect();
    Ok(view)
}

#[derive(Clone)]
pub struct AccessCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    catalog: Catalog,
    /// The current snapshot; never held across an await.
    view: RwLock<AccessView>,
    /// Reload tickets: `requested` counts the reloads asked for, `covered` the highest ticket
    /// a finished reload started after.
    requested: AtomicU64,
    covered: AtomicU64,
    /// One reload at a time; guards nothing but that.
    reloading: tokio::sync::Mutex<()>,
}

impl AccessCache {
    /// Loads everything once and follows changes from then on (also across new sessions of
    /// the catalog: it reloads whenever its watch may have missed events).
    pub async fn start(catalog: Catalog) -> Result<AccessCache> {
        let zk = catalog.zookeeper();
        let watcher = zk.watch(ACCESS, AddWatchMode::PersistentRecursive).await?;
        let view = read_view(&zk).await?;
        let cache = AccessCache {
            inner: Arc::new(CacheInner {
                catalog,
                view: RwLock::new(view),
                requested: AtomicU64::new(0),
                covered: AtomicU64::new(0),
                reloading: tokio::sync::Mutex::new(()),
            }),
        };
        tokio::spawn(cache.clone().follow(watcher));
        Ok(cache)
    }

    /// The current snapshot.
    pub fn view(&self) -> RwLockReadGuard<'_, AccessView> {
        self.inner.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads everything, after a `sync`, unless a reload that started after this call
    /// finished meanwhile. Concurrent callers share reloads.
    pub async fn reload(&self) -> Result<()> {
        let ticket = self.inner.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _one_at_a_time = self.inner.reloading.lock().await;
        if self.inner.covered.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        let covering = self.inner.requested.load(Ordering::SeqCst);
        let zk = self.inner.catalog.zookeeper();
        zk.sync(ACCESS).await?;
        let view = read_view(&zk).await?;
        *self.inner.view.write().unwrap_or_else(|p| p.into_inner()) = view;
        self.inner.covered.store(covering, Ordering::SeqCst);
        Ok(())
    }

    /// [`AccessView::allows`], asked again after a fresh reload when the cache says no.
    pub async fn allows(
        &self,
        user: &str,
        kind: ResourceKind,
        name: &str,
        permission: Permission,
    ) -> Result<bool> {
        if self.view().allows(user, kind, name, permission) {
            return Ok(true);
        }
        self.reload().await?;
        Ok(self.view().allows(user, kind, name, permission))
    }

    /// A user's record; read afresh when the cache has none (a user registered a moment ago).
    pub async fn user(&self, name: &str) -> Result<Option<UserRecord>> {
        if let Some(record) = self.view().user(name) {
            return Ok(Some(record.clone()));
        }
        self.reload().await?;
        Ok(self.view().user(name).cloned())
    }

    async fn follow(self, mut watcher: zookeeper_client::PersistentWatcher) {
        loop {
            let event = watcher.changed().await;
            match event.event_type {
                EventType::Session => match event.session_state {
                    // Events may have been lost while disconnected (ZOOKEEPER-4698).
                    SessionState::SyncConnected => self.reload_until_done().await,
                    state if state.is_terminated() => {
                        watcher = self.watch_new_session().await;
                    }
                    _ => {}
                },
                EventType::NodeDeleted => self.apply(&event.path, None),
                EventType::NodeCreated | EventType::NodeDataChanged => {
                    let zk = self.inner.catalog.zookeeper();
                    match zk.get_data(&event.path).await {
                        Ok((data, _)) => self.apply(&event.path, Some(&data)),
                        Err(ZkError::NoNode) => self.apply(&event.path, None),
                        Err(e) => {
                            tracing::warn!(path = %event.path, error = %e, "access: cannot read a change; reloading");
                            self.reload_until_done().await;
                        }
                    }
                }
                EventType::NodeChildrenChanged => {}
            }
        }
    }

    fn apply(&self, path: &str, data: Option<&[u8]>) {
        self.inner
            .view
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(path, data);
    }

    async fn reload_until_done(&self) {
        while let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "access: reload failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits for the catalog to be given a live session (the service renews it), then
    /// watches and reloads through it. The old view stays in force meanwhile.
    async fn watch_new_session(&self) -> zookeeper_client::PersistentWatcher {
        loop {
            let zk = self.inner.catalog.zookeeper();
            if !zk.state().is_terminated() {
                if let Ok(watcher) = zk.watch(ACCESS, AddWatchMode::PersistentRecursive).await {
                    self.reload_until_done().await;
                    return watcher;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> AccessView {
        let mut view = AccessView::default();
        let user = |role| {
            serde_json::to_vec(&UserRecord {
                role,
                generation: 1,
                tokens_after: 0,
            })
            .unwrap()
        };
        for (name, role) in [
            ("root", Role::Admin),
            ("alice", Role::User),
            ("bob", Role::User),
            ("carol", Role::User),
        ] {
            view.apply(&format!("{USERS}/{name}"), Some(&user(role)));
        }
        view.apply(&format!("{OWNERS}/queue/orders"), Some(b"alice"));
        view.apply(&format!("{OWNERS}/queue/billing"), Some(b"carol"));
        view
    }

    fn grant(view: &mut AccessView, id: &str, user: &str, pattern: &str, by: &str) {
        let grant = Grant {
            user: user.into(),
            kind: ResourceKind::Queue,
            pattern: pattern.into(),
            permissions: vec![Permission::Read],
            granted_by: by.into(),
        };
        view.apply(
            &format!("{GRANTS}/{id}"),
            Some(&serde_json::to_vec(&grant).unwrap()),
        );
    }

    #[test]
    fn owners_and_admins_may_do_everything_strangers_nothing() {
        let view = view();
        for p in [Permission::Configure, Permission::Write, Permission::Read] {
            assert!(view.allows("alice", ResourceKind::Queue, "orders", p));
            assert!(view.allows("root", ResourceKind::Queue, "orders", p));
            assert!(!view.allows("bob", ResourceKind::Queue, "orders", p));
            assert!(!view.allows("ghost", ResourceKind::Queue, "orders", p));
        }
        // Same name, other kind: not owned.
        assert!(!view.allows("alice", ResourceKind::Topic, "orders", Permission::Read));
    }

    #[test]
    fn a_grant_gives_only_its_permissions_and_only_where_its_granter_vouches() {
        let mut view = view();
        grant(&mut view, "g-1", "bob", "*", "alice");
        assert!(view.allows("bob", ResourceKind::Queue, "orders", Permission::Read));
        assert!(!view.allows("bob", ResourceKind::Queue, "orders", Permission::Write));
        // alice's pattern does not reach carol's queue.
        assert!(!view.allows("bob", ResourceKind::Queue, "billing", Permission::Read));
        grant(&mut view, "g-2", "bob", "bill*", "root");
        assert!(view.allows("bob", ResourceKind::Queue, "billing", Permission::Read));
        view.apply(&format!("{GRANTS}/g-2"), None);
        assert!(!view.allows("bob", ResourceKind::Queue, "billing", Permission::Read));
    }

    #[test]
    fn a_deleted_user_loses_everything_and_its_tokens() {
        let mut view = view();
        view.apply(&format!("{USERS}/alice"), None);
        assert!(!view.allows("alice", ResourceKind::Queue, "orders", Permission::Read));
        let record = UserRecord {
            role: Role::User,
            generation: 5,
            tokens_after: 100,
        };
        assert!(record.accepts(5, 100));
        assert!(!record.accepts(4, 200));
        assert!(!record.accepts(5, 99));
    }

    #[test]
    fn patterns_are_globs() {
        assert!(pattern_matches("orders.*", "orders.eu"));
        assert!(pattern_matches("q?", "q1"));
        assert!(!pattern_matches("orders", "orders2"));
    }
}
