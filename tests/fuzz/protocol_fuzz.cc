// protocol_fuzz.cc: libFuzzer target for every decoder of PROTOCOL.md
// (STYLE.md: a fuzz target for every decoder).  `make fuzz FUZZ_TARGET=protocol_fuzz`.
//
// The first byte picks the decoder, the rest is its input.  Whatever the
// bytes, no decoder may crash or read past its input, and what a reply
// decoder accepts must encode back to bytes it accepts again with the same
// meaning (checked by a second round trip being byte-identical).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tally/protocol.h"

namespace {

using namespace tally;
using namespace tally::proto;

void Check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string again, third;
  switch (data[0] % 12) {
    case 0: {
      FrameHeader h;
      if (body.size() >= frame_header_bytes && DecodeFrameHeader(body, &h).ok()) {
        (void)VerifyChecksum(body.substr(0, frame_header_bytes), body.substr(frame_header_bytes));
      }
      break;
    }
    case 1: {
      HelloRequest hello;
      if (DecodeHello(body, &hello).ok()) {
        EncodeHello(hello, &again);
        Check(again == body);
      }
      break;
    }
    case 2: {
      int64_t t;
      std::vector<Result> results;
      if (DecodeApplyReply(body, &t, &results).ok()) {
        EncodeApplyReply(t, results, &again);
        Check(again == body);
      }
      break;
    }
    case 3: {
      Balance b;
      int64_t t;
      if (DecodeBalanceReply(body, &b, &t).ok()) {
        EncodeBalanceReply(b, t, &again);
        Check(again == body);
      }
      break;
    }
    case 4: {
      HistoryQuery q;
      if (DecodeHistoryRequest(body, &q).ok()) {
        EncodeHistoryRequest(q, &again);
        Check(again == body);
      }
      break;
    }
    case 5: {
      HistoryPage page;
      if (DecodeHistoryReply(body, &page).ok()) {
        EncodeHistoryReply(page, &again);
        HistoryPage twice;
        Check(DecodeHistoryReply(again, &twice).ok());
        EncodeHistoryReply(twice, &third);
        Check(third == again);
      }
      break;
    }
    case 6: {
      std::vector<RequestView> rows;
      bool truncated;
      if (DecodeRequestsReply(body, &rows, &truncated).ok()) {
        EncodeRequestsReply(rows, truncated, &again);
        Check(again == body);
      }
      break;
    }
    case 7: {
      std::vector<UsageRow> rows;
      bool truncated;
      if (DecodeUsageReply(body, &rows, &truncated).ok()) {
        EncodeUsageReply(rows, truncated, &again);
        Check(again == body);
      }
      break;
    }
    case 8: {
      std::vector<Event> events;
      if (DecodeEvents(body, &events).ok()) {
        EncodeEvents(events, &again);
        Check(again == body);
      }
      break;
    }
    case 9: {
      BalanceRequest q;
      if (DecodeBalanceRequest(body, &q).ok()) {
        EncodeBalanceRequest(q, &again);
        Check(again == body);
      }
      break;
    }
    case 10: {
      RequestsRequest q;
      if (DecodeRequestsRequest(body, &q).ok()) {
        EncodeRequestsRequest(q, &again);
        Check(again == body);
      }
      break;
    }
    case 11: {
      OrgSettings s;
      if (DecodeSettingsReply(body, &s).ok()) {
        EncodeSettingsReply(s, &again);
        Check(again == body);
      }
      break;
    }
  }
  return 0;
}
