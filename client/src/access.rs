//! Permissions and user management through the gateway: granting other users `configure`,
//! `write` and `read` on your exchanges, queues and topics (`/permissions`), and the admin's
//! user administration (`/auth/users`). The rules themselves are the gateway's; see
//! docs/security.md.

use crate::{ClientError, Connection};
pub use mom_common::access::{Permission, ResourceKind};
use reqwest::Method;
use serde::{Deserialize, Serialize};

/// A grant as the gateway lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    pub id: String,
    pub user: String,
    pub kind: ResourceKind,
    /// A name, or a pattern with `*` and `?`.
    pub pattern: String,
    pub permissions: Vec<Permission>,
    pub granted_by: String,
}

/// A user as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    /// `user` or `admin`.
    pub role: String,
}

#[derive(Serialize)]
struct GrantBody<'a> {
    user: &'a str,
    kind: ResourceKind,
    pattern: &'a str,
    permissions: &'a [Permission],
}

#[derive(Deserialize)]
struct GrantList {
    permissions: Vec<GrantInfo>,
}

#[derive(Deserialize)]
struct UserList {
    users: Vec<UserInfo>,
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

impl Connection {
    /// Gives `user` `permissions` on the resources of `kind` matching `pattern`: an owner
    /// grants on what it owns, an admin on anything.
    pub async fn grant(
        &self,
        user: &str,
        kind: ResourceKind,
        pattern: &str,
        permissions: &[Permission],
    ) -> Result<GrantInfo, ClientError> {
        let body = GrantBody {
            user,
            kind,
            pattern,
            permissions,
        };
        self.call(self.request(Method::POST, "/permissions").json(&body))
            .await
    }

    /// The grants this user gave or got (every grant, for an admin).
    pub async fn permissions(&self) -> Result<Vec<GrantInfo>, ClientError> {
        let list: GrantList = self.call(self.request(Method::GET, "/permissions")).await?;
        Ok(list.permissions)
    }

    /// Withdraws a grant by its id.
    pub async fn revoke(&self, grant_id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/permissions/{grant_id}")).await
    }

    /// Who this connection's token stands for: `(user name, role)`.
    pub async fn whoami(&self) -> Result<UserInfo, ClientError> {
        self.call(self.request(Method::GET, "/auth/whoami")).await
    }

    /// Swaps this connection's token for a fresh one before it expires.
    pub async fn refresh_token(&mut self) -> Result<(), ClientError> {
        let fresh: Token = self
            .call(self.request(Method::POST, "/auth/refresh"))
            .await?;
        self.set_token(fresh.token);
        Ok(())
    }

    /// Admin: every user.
    pub async fn users(&self) -> Result<Vec<UserInfo>, ClientError> {
        let list: UserList = self.call(self.request(Method::GET, "/auth/users")).await?;
        Ok(list.users)
    }

    /// Admin: creates a user (also while registration is closed).
    pub async fn create_user(
        &self,
        user: &str,
        password: &str,
        role: &str,
    ) -> Result<(), ClientError> {
        let body = serde_json::json!({ "username": user, "password": password, "role": role });
        self.send(self.request(Method::POST, "/auth/users").json(&body))
            .await?;
        Ok(())
    }

    /// Admin: deletes a user; its tokens stop working at once.
    pub async fn delete_user(&self, user: &str) -> Result<(), ClientError> {
        self.delete(&format!("/auth/users/{user}")).await
    }

    /// Admin: makes a user an `admin` or a plain `user`.
    pub async fn set_role(&self, user: &str, role: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "role": role });
        self.send(
            self.request(Method::PUT, &format!("/auth/users/{user}/role"))
                .json(&body),
        )
        .await?;
        Ok(())
    }

    /// Admin: sets a new password; the user's old tokens stop working.
    pub async fn reset_password(&self, user: &str, password: &str) -> Result<(), ClientError> {
        let body = serde_json::json!({ "password": password });
        self.send(
            self.request(Method::PUT, &format!("/auth/users/{user}/password"))
                .json(&body),
        )
        .await?;
        Ok(())
    }
}
