//! The `mom` subcommands for permissions and user administration (`mom grant`, `mom users`,
//! ...): each is one call of the client library, printed for people.

use clap::{Subcommand, ValueEnum};
use mom_client::{Connection, Permission, ResourceKind};

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Exchange,
    Queue,
    Topic,
}

impl From<Kind> for ResourceKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Exchange => ResourceKind::Exchange,
            Kind::Queue => ResourceKind::Queue,
            Kind::Topic => ResourceKind::Topic,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Access {
    Configure,
    Write,
    Read,
}

impl From<Access> for Permission {
    fn from(access: Access) -> Self {
        match access {
            Access::Configure => Permission::Configure,
            Access::Write => Permission::Write,
            Access::Read => Permission::Read,
        }
    }
}

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Show who the credentials stand for.
    Whoami,
    /// Give a user permissions on your exchanges, queues or topics matching a pattern.
    Grant {
        /// The user who gets the permissions. (Not `user`: that is the global --user.)
        #[arg(value_name = "USER")]
        grantee: String,
        #[arg(value_enum)]
        kind: Kind,
        /// A name, or a pattern with `*` and `?`.
        pattern: String,
        /// One or more of configure, write, read.
        #[arg(value_enum, required = true)]
        permissions: Vec<Access>,
    },
    /// Withdraw a grant by its id (see `mom list permissions`).
    Revoke { id: String },
    /// Admin: create a user (also while registration is closed).
    CreateUser {
        name: String,
        /// The new user's password (not `password`: that is the global --password).
        #[arg(value_name = "PASSWORD")]
        new_password: String,
        #[arg(long)]
        admin: bool,
    },
    /// Admin: delete a user; its tokens stop working at once.
    DeleteUser { name: String },
    /// Admin: make a user an admin, or a plain user again.
    SetRole {
        name: String,
        #[arg(value_parser = ["admin", "user"])]
        role: String,
    },
    /// Admin: set a user's password; its old tokens stop working.
    ResetPassword {
        name: String,
        #[arg(value_name = "PASSWORD")]
        new_password: String,
    },
}

pub async fn run(conn: Connection, command: &AccessCommand) -> anyhow::Result<()> {
    match command {
        AccessCommand::Whoami => {
            let me = conn.whoami().await?;
            println!("{} ({})", me.username, me.role);
        }
        AccessCommand::Grant {
            grantee,
            kind,
            pattern,
            permissions,
        } => {
            let permissions: Vec<Permission> = permissions.iter().map(|&p| p.into()).collect();
            let grant = conn
                .grant(grantee, (*kind).into(), pattern, &permissions)
                .await?;
            println!("granted as {}", grant.id);
        }
        AccessCommand::Revoke { id } => {
            conn.revoke(id).await?;
            println!("revoked {id}");
        }
        AccessCommand::CreateUser {
            name,
            new_password,
            admin,
        } => {
            let role = if *admin { "admin" } else { "user" };
            conn.create_user(name, new_password, role).await?;
            println!("user {name} ({role}) created");
        }
        AccessCommand::DeleteUser { name } => {
            conn.delete_user(name).await?;
            println!("user {name} deleted");
        }
        AccessCommand::SetRole { name, role } => {
            conn.set_role(name, role).await?;
            println!("{name} is now {role}");
        }
        AccessCommand::ResetPassword { name, new_password } => {
            conn.reset_password(name, new_password).await?;
            println!("password of {name} reset; their old tokens no longer work");
        }
    }
    Ok(())
}
