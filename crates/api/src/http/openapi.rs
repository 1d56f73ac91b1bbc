//! The OpenAPI 3 document, generated from the handlers' annotations (utoipa) and served at
//! `/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    billing, credentials, denylist, ephemeral, error, logs, metered, metered_projects, nodes,
    settings, tenants, usage,
};
use crate::state::Shared;

/// The OpenAPI document.
pub fn routes() -> Router<Shared> {
    Router::new().route("/openapi.json", get(serve))
}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, o: &mut utoipa::openapi::OpenApi) {
        let c = o.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Turnpike control plane", description = "Tenants, keys, TURN credentials, ICE servers, usage, quotas, alerts and logs. Errors: `{\"error\": {\"code\", \"message\"}}`."),
    paths(
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant, tenants::delete_tenant,
        tenants::suspend_tenant, tenants::resume_tenant, tenants::put_regions,
        tenants::admin_rotate_key, tenants::tenant_rotate_key, tenants::list_keys, tenants::revoke_key,
        tenants::rotate_shared_secret,
        credentials::create_credential, credentials::list_credentials, credentials::get_credential,
        credentials::update_credential, credentials::delete_credential, credentials::delete_by_label,
        credentials::create_publishable_key,
        ephemeral::create_ephemeral, ephemeral::revoke, ephemeral::list_revocations, ephemeral::ice_servers, ephemeral::ice_urls,
        usage::get_usage, usage::get_current, usage::get_top_users,
        billing::put_plan, billing::get_tenant_plan, billing::delete_plan, billing::get_plan, billing::list_plans,
        billing::statements,
        settings::put_tenant_quota, settings::put_credential_quota, settings::list_quotas, settings::delete_quota,
        settings::put_notifications, settings::get_notifications, settings::list_alerts,
        settings::send_test, settings::list_deliveries, settings::retry_delivery,
        logs::audit_log, logs::allocation_log, logs::live_allocations, logs::auth_failures,
        denylist::list_denied, denylist::add_denied, denylist::delete_denied,
        nodes::list_nodes,
        metered::create, metered::ice_servers, metered::list, metered::enable, metered::disable,
        metered::delete, metered::delete_by_label, metered::current_usage, metered::current_usage_by_user,
        metered::usage_daily_by_user, metered::current_usage_by_date, metered::current_usage_by_user_v1,
        metered_projects::create_project, metered_projects::list_projects, metered_projects::update_project,
        metered_projects::delete_project, metered_projects::regenerate_api_key,
        metered_projects::create_credential, metered_projects::list_credentials,
        metered_projects::delete_credential, metered_projects::delete_credentials_by_label,
        metered_projects::current_usage, metered_projects::current_usage_by_date,
        metered_projects::current_usage_by_user, metered_projects::current_usage_for_user,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&Bearer),
    tags(
        (name = "tenants", description = "Operator: tenants and their keys (admin key)"),
        (name = "keys", description = "A tenant's own keys and shared secrets"),
        (name = "credentials", description = "Stored TURN credentials"),
        (name = "ephemeral", description = "Short-lived credentials, revocation, ICE servers"),
        (name = "usage", description = "Metered usage"),
        (name = "quotas", description = "Quotas, notifications, alerts"),
        (name = "billing", description = "Price plans (admin key) and monthly statements"),
        (name = "logs", description = "Audit and allocation logs"),
        (name = "deny-list", description = "Operator: client addresses refused on every listener (admin key)"),
        (name = "metered", description = "Compatibility with Metered's TURN REST API"),
    )
)]
pub struct ApiDoc;

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
