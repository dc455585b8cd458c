// The snake_case / dotted names of the on-wire enums, in one place.
#include "tally/command.h"
#include "tally/query.h"

namespace tally {

std::string_view EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::credits_granted: return "credits.granted";
    case EventKind::credits_allocated: return "credits.allocated";
    case EventKind::credits_expired: return "credits.expired";
    case EventKind::credits_voided: return "credits.voided";
    case EventKind::balance_low: return "balance.low";
    case EventKind::balance_depleted: return "balance.depleted";
    case EventKind::request_created: return "request.created";
    case EventKind::request_approved: return "request.approved";
    case EventKind::request_rejected: return "request.rejected";
  }
  return "unknown_event";
}

std::string_view HistoryKindName(HistoryKind kind) {
  switch (kind) {
    case HistoryKind::topup: return "topup";
    case HistoryKind::allocate: return "allocate";
    case HistoryKind::reclaim: return "reclaim";
    case HistoryKind::grant: return "grant";
    case HistoryKind::void_grant: return "void";
    case HistoryKind::adjust: return "adjust";
    case HistoryKind::deduct: return "deduct";
    case HistoryKind::deduct_rollup: return "deduct_rollup";
    case HistoryKind::hold: return "hold";
    case HistoryKind::capture: return "capture";
    case HistoryKind::release: return "release";
    case HistoryKind::expire: return "expire";
    case HistoryKind::wallet_delete: return "wallet_delete";
  }
  return "unknown_kind";
}

std::string_view RequestStatusName(RequestStatus status) {
  switch (status) {
    case RequestStatus::pending: return "pending";
    case RequestStatus::approved: return "approved";
    case RequestStatus::rejected: return "rejected";
  }
  return "unknown_status";
}

}  // namespace tally
