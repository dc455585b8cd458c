#include "wal/history_file.h"

#include <algorithm>
#include <cstring>

#include "tally/assert.h"
#include "tally/bytes.h"
#include "xxhash.h"

namespace tally::wal {
namespace {

constexpr uint32_t kEntryBodyBytes = history_record_bytes - 8;  // before the checksum

uint64_t Sum(const char* bytes, size_t n, uint64_t seq) {
  uint64_t sum = XXH3_64bits_withSeed(bytes, n, seq);
  return sum == 0 ? 1 : sum;  // 0 never means "not checked"
}

std::span<const std::byte> Bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

// EncodeEntry writes entry `e`'s 96-byte record (wal/HISTORY.md) at `out`:
// each field stored at its offset, no appends.
void EncodeEntry(const HistoryEntryRef& e, uint64_t texts_end, char* out) {
  auto put = [out](size_t offset, auto value) { std::memcpy(out + offset, &value, sizeof value); };
  put(0, e.org_id);
  put(8, e.wallet_id);
  put(16, e.time_us);
  put(24, static_cast<uint8_t>(e.kind));
  put(25, static_cast<uint8_t>(e.out ? 1 : 0));
  put(26, static_cast<uint8_t>(e.held ? 1 : 0));
  put(27, static_cast<uint8_t>(e.has_text ? 1 : 0));
  put(28, uint32_t{0});
  put(32, e.asset.lo());
  put(40, e.asset.hi());
  put(48, e.amount);
  put(56, e.balance_after);
  put(64, e.related_id);
  put(72, e.prev_seq);
  put(80, texts_end);
  static_assert(kEntryBodyBytes == 88);
  put(88, Sum(out, kEntryBodyBytes, e.seq));
}

// DecodeEntry checks and decodes the record of `seq`; *has_text and
// *texts_end say where its texts are.
absl::StatusOr<HistoryRecord> DecodeEntry(std::string_view bytes, uint64_t seq, bool* has_text,
                                          uint64_t* texts_end) {
  TALLY_ASSERT(bytes.size() == history_record_bytes);
  uint64_t stated = 0;
  std::memcpy(&stated, bytes.data() + kEntryBodyBytes, 8);
  if (stated != Sum(bytes.data(), kEntryBodyBytes, seq)) {
    return absl::DataLossError("history entry " + std::to_string(seq) + ": checksum mismatch");
  }
  ByteReader r(bytes, "history entry");
  HistoryRecord rec;
  HistoryEntryView& v = rec.view;
  v.seq = seq;
  rec.org_id = r.Get<uint64_t>();
  v.wallet_id = r.Get<uint64_t>();
  v.time_us = r.Get<int64_t>();
  v.kind = static_cast<HistoryKind>(r.Get<uint8_t>());
  v.out = r.Get<uint8_t>() == 1;
  v.held = r.Get<uint8_t>() == 1;
  *has_text = r.Get<uint8_t>() == 1;
  (void)r.Get<uint32_t>();
  uint64_t lo = r.Get<uint64_t>();
  uint64_t hi = r.Get<uint64_t>();
  v.asset = Asset::FromPacked(lo, hi);
  v.amount = r.Get<int64_t>();
  v.balance_after = r.Get<int64_t>();
  v.related_id = r.Get<uint64_t>();
  rec.prev_seq = r.Get<uint64_t>();
  *texts_end = r.Get<uint64_t>();
  if (!r.ok()) return r.status();
  if (rec.prev_seq >= seq) return absl::DataLossError("history entry: chain points forward");
  return rec;
}

bool Matches(const HistoryEntryView& v, const HistoryQuery& q) {
  if (!q.asset.empty() && v.asset != q.asset) return false;
  if (q.kind_mask != 0 && (q.kind_mask & (1u << static_cast<uint8_t>(v.kind))) == 0) return false;
  if (q.from_us != 0 && v.time_us < q.from_us / 1000 * 1000) return false;
  if (q.to_us != 0 && v.time_us >= q.to_us) return false;
  return true;
}

absl::StatusOr<std::unique_ptr<File>> OpenOrCreate(FileSystem* fs, const std::string& path,
                                                   WritePath write_path) {
  absl::StatusOr<std::unique_ptr<File>> file = fs->Open(path, OpenMode::kReadWrite, write_path);
  if (file.ok()) return file;
  return fs->Open(path, OpenMode::kCreate, write_path);
}

// StartAligned empties `out` and makes room for `bytes`, then pads its
// front so the byte after the padding sits at an address congruent to
// `offset` modulo direct_io_alignment_bytes: written from there, the whole
// blocks of the write go direct (File::PWrite) with no copy.  Returns the
// padding's length.
size_t StartAligned(std::string* out, uint64_t offset, size_t bytes) {
  out->clear();
  out->reserve(bytes + direct_io_alignment_bytes);  // never moves while it is filled
  const uint64_t address = reinterpret_cast<uintptr_t>(out->data());
  const size_t pad = (offset - address) % direct_io_alignment_bytes;
  out->append(pad, '\0');
  return pad;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HistoryFile>> HistoryFile::Open(FileSystem* fs, std::string dir,
                                                               const Ledger& ledger,
                                                               HistoryRecovery* report,
                                                               WritePath write_path) {
  std::unique_ptr<HistoryFile> h(new HistoryFile(fs, dir));
  *report = HistoryRecovery{};
  (void)fs->CreateDir(dir);
  absl::StatusOr<std::unique_ptr<File>> entries = OpenOrCreate(fs, dir + "/entries", write_path);
  if (!entries.ok()) return entries.status();
  absl::StatusOr<std::unique_ptr<File>> texts = OpenOrCreate(fs, dir + "/texts", write_path);
  if (!texts.ok()) return texts.status();
  h->entries_file_ = std::move(*entries);
  h->texts_file_ = std::move(*texts);
  if (absl::Status s = fs->SyncDir(dir); !s.ok()) return s;

  // The durable count the last Sync recorded (0 when there is none or it is damaged).
  uint64_t synced = 0;
  if (absl::StatusOr<std::unique_ptr<File>> f = fs->Open(dir + "/synced", OpenMode::kReadOnly);
      f.ok()) {
    char buf[16];
    absl::StatusOr<size_t> got = (*f)->PRead(0, std::as_writable_bytes(std::span(buf, 16)));
    uint64_t count = 0, sum = 0;
    std::memcpy(&count, buf, 8);
    std::memcpy(&sum, buf + 8, 8);
    if (got.ok() && *got == 16 && sum == Sum(buf, 8, 0)) synced = count;
  }
  absl::StatusOr<uint64_t> size = h->entries_file_->Size();
  if (!size.ok()) return size.status();
  const uint64_t on_disk = *size / history_record_bytes;
  const uint64_t total = ledger.history_entries_total();
  const uint64_t window_first = ledger.history_begin_seq();
  uint64_t trusted = std::min({synced, on_disk, total});

  // Records older than the window cannot be rewritten: check what the last
  // sync did not cover.
  for (uint64_t seq = trusted + 1; seq < window_first; ++seq) {
    if (seq > on_disk) {
      report->entries_lost += window_first - seq;
      break;
    }
    if (h->Read(seq, false).ok()) {
      ++report->entries_on_disk;
    } else {
      ++report->entries_lost;
    }
  }
  report->entries_on_disk += trusted;

  // Everything from there to the ledger's newest entry is rewritten from RAM.
  uint64_t from = std::max(trusted + 1, window_first);
  h->entries_ = from - 1;
  h->durable_ = std::min(trusted, h->entries_);
  if (h->entries_ == 0) {
    h->texts_end_ = 0;
  } else if (absl::StatusOr<uint64_t> end = h->TextsEnd(h->entries_); end.ok()) {
    h->texts_end_ = *end;
  } else {
    absl::StatusOr<uint64_t> texts_size = h->texts_file_->Size();
    if (!texts_size.ok()) return texts_size.status();
    h->texts_end_ = *texts_size;
  }
  h->written_out_ = h->entries_ * history_record_bytes / history_cache_step_bytes *
                    history_cache_step_bytes;
  h->dropped_ = h->written_out_;
  uint64_t before = h->entries_;
  if (absl::Status s = h->Append(ledger); !s.ok()) return s;
  report->entries_respilled = h->entries_ - before;
  return h;
}

absl::Status HistoryFile::Append(const Ledger& ledger) {
  const uint64_t total = ledger.history_entries_total();
  if (total <= entries_) return absl::OkStatus();
  uint64_t from = entries_ + 1;
  const uint64_t window_first = ledger.history_begin_seq();
  // One batch made more entries than the RAM window holds: the oldest of
  // them are gone before they could be written; their records stay zero
  // (a checksum mismatch: reported as lost when read).
  if (from < window_first) from = window_first;
  while (from <= total) {
    uint64_t to = std::min(total + 1, from + history_write_entries_max);
    if (absl::Status s = Write(ledger, from, to); !s.ok()) return s;
    from = to;
  }
  entries_ = total;
  return absl::OkStatus();
}

absl::Status HistoryFile::Write(const Ledger& ledger, uint64_t from_seq, uint64_t to_seq) {
  TALLY_ASSERT(from_seq < to_seq && to_seq - from_seq <= history_write_entries_max);
  // The records are encoded straight from the ledger's entries
  // (Ledger::VisitHistory) into a buffer that starts at the file offset's
  // place in a block, so the whole blocks of each write bypass the page
  // cache on a direct file.  The partial blocks at the ends go through it,
  // and the next write's first partial block is the same page: nothing is
  // ever written direct and cached at once, and a snapshot child's
  // fdatasync covers everything written before its fork (wal/HISTORY.md).
  if (records_ == nullptr) {
    // Room for a chunk's records after up to a block of padding, and a
    // block to align the start: allocated once, never zeroed.
    records_ = std::make_unique_for_overwrite<char[]>(history_write_entries_max * history_record_bytes +
                                                      2 * direct_io_alignment_bytes);
  }
  const uint64_t offset = (from_seq - 1) * history_record_bytes;
  const uintptr_t base = reinterpret_cast<uintptr_t>(records_.get());
  char* const block = records_.get() + (-base) % direct_io_alignment_bytes;  // aligned
  char* const first = block + offset % direct_io_alignment_bytes;
  const uint64_t texts_at = texts_end_;
  const size_t texts_pad = StartAligned(&texts_buffer_, texts_at, 0);
  char* at = first;
  ledger.VisitHistory(from_seq, to_seq, [&](const HistoryEntryRef& e) {
    if (e.has_text) [[unlikely]] {
      size_t start = texts_buffer_.size();
      ByteWriter w(&texts_buffer_);
      w.Text<uint16_t>(e.reference);
      w.Text<uint16_t>(e.actor);
      w.Put<uint64_t>(Sum(texts_buffer_.data() + start, texts_buffer_.size() - start, e.seq));
    }
    EncodeEntry(e, texts_at + texts_buffer_.size() - texts_pad, at);
    at += history_record_bytes;
  });
  const size_t entries_bytes = static_cast<size_t>(at - first);
  TALLY_ASSERT(entries_bytes == (to_seq - from_seq) * history_record_bytes);
  const std::string_view texts = std::string_view(texts_buffer_).substr(texts_pad);
  if (!texts.empty()) {
    if (absl::Status s = texts_file_->PWrite(texts_at, Bytes(texts)); !s.ok()) return s;
  }
  const std::string_view entries(first, entries_bytes);
  if (absl::Status s = entries_file_->PWrite(offset, Bytes(entries)); !s.ok()) return s;
  texts_end_ = texts_at + texts.size();
  RecycleCache(offset + entries_bytes);
  return absl::OkStatus();
}

void HistoryFile::RecycleCache(uint64_t end) {
  // The entries are not read back while they are in the ledger's RAM
  // window, and every new page-cache page is fresh memory (on this VM a
  // host fault: docs/DURABILITY.md).  Written out a step behind the end and
  // dropped a step later (clean by then), the pages go back to the kernel
  // soon enough to be the next writes' pages.  Both calls are advice: a
  // failure changes nothing written, and an I/O error surfaces in Sync().
  if (end < written_out_ + 2 * history_cache_step_bytes) return;
  const uint64_t to = (end - history_cache_step_bytes) / history_cache_step_bytes *
                      history_cache_step_bytes;
  (void)entries_file_->StartWriteOut(written_out_, to - written_out_);
  if (written_out_ > dropped_) (void)entries_file_->DropCached(dropped_, written_out_ - dropped_);
  dropped_ = written_out_;
  written_out_ = to;
}

absl::Status HistoryFile::Sync() {
  if (durable_ == entries_) return absl::OkStatus();
  if (absl::Status s = texts_file_->DataSync(); !s.ok()) return s;
  if (absl::Status s = entries_file_->DataSync(); !s.ok()) return s;
  // 16 bytes in one sector: the count, then its checksum.
  char buf[16];
  std::memcpy(buf, &entries_, 8);
  uint64_t sum = Sum(buf, 8, 0);
  std::memcpy(buf + 8, &sum, 8);
  absl::StatusOr<std::unique_ptr<File>> f = fs_->Open(dir_ + "/synced", OpenMode::kReadWrite);
  if (!f.ok()) {
    f = fs_->Open(dir_ + "/synced", OpenMode::kCreate);
    if (!f.ok()) return f.status();
    if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return s;
  }
  if (absl::Status s = (*f)->PWrite(0, Bytes(std::string_view(buf, 16))); !s.ok()) return s;
  if (absl::Status s = (*f)->DataSync(); !s.ok()) return s;
  durable_ = entries_;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> HistoryFile::TextsEnd(uint64_t seq) const {
  char buf[history_record_bytes];
  absl::StatusOr<size_t> got = entries_file_->PRead(
      (seq - 1) * history_record_bytes, std::as_writable_bytes(std::span(buf, sizeof buf)));
  if (!got.ok()) return got.status();
  if (*got != sizeof buf) return absl::DataLossError("history entry missing");
  bool has_text = false;
  uint64_t texts_end = 0;
  absl::StatusOr<HistoryRecord> r =
      DecodeEntry(std::string_view(buf, sizeof buf), seq, &has_text, &texts_end);
  if (!r.ok()) return r.status();
  return texts_end;
}

absl::StatusOr<HistoryRecord> HistoryFile::Read(uint64_t seq, bool with_texts) const {
  TALLY_ASSERT(seq >= 1);
  char buf[history_record_bytes];
  absl::StatusOr<size_t> got = entries_file_->PRead(
      (seq - 1) * history_record_bytes, std::as_writable_bytes(std::span(buf, sizeof buf)));
  if (!got.ok()) return got.status();
  if (*got != sizeof buf) {
    return absl::DataLossError("history entry " + std::to_string(seq) + " missing");
  }
  bool has_text = false;
  uint64_t texts_end = 0;
  absl::StatusOr<HistoryRecord> rec =
      DecodeEntry(std::string_view(buf, sizeof buf), seq, &has_text, &texts_end);
  if (!rec.ok() || !has_text || !with_texts) return rec;
  // The texts sit between the previous entry's end and this one's.
  uint64_t begin = 0;
  if (seq > 1) {
    absl::StatusOr<uint64_t> prev_end = TextsEnd(seq - 1);
    if (!prev_end.ok()) return prev_end.status();
    begin = *prev_end;
  }
  if (texts_end < begin || texts_end - begin > 2 * (2 + text_bytes_max) + 8) {
    return absl::DataLossError("history texts " + std::to_string(seq) + ": bad extent");
  }
  std::string bytes(texts_end - begin, '\0');
  absl::StatusOr<size_t> n = texts_file_->PRead(
      begin, std::as_writable_bytes(std::span(bytes.data(), bytes.size())));
  if (!n.ok()) return n.status();
  if (*n != bytes.size() || bytes.size() < 8) {
    return absl::DataLossError("history texts " + std::to_string(seq) + " missing");
  }
  uint64_t stated = 0;
  std::memcpy(&stated, bytes.data() + bytes.size() - 8, 8);
  if (stated != Sum(bytes.data(), bytes.size() - 8, seq)) {
    return absl::DataLossError("history texts " + std::to_string(seq) + ": checksum mismatch");
  }
  ByteReader r(std::string_view(bytes).substr(0, bytes.size() - 8), "history texts");
  rec->view.reference = std::string(r.Text<uint16_t>(text_bytes_max));
  rec->view.actor = std::string(r.Text<uint16_t>(text_bytes_max));
  if (!r.ok() || !r.done()) return absl::DataLossError("history texts: bad layout");
  return rec;
}

absl::StatusOr<HistoryPage> HistoryFile::GetHistory(const Ledger& ledger,
                                                    const HistoryQuery& q) const {
  const uint64_t window_first = ledger.history_begin_seq();
  const uint32_t limit = std::clamp<uint32_t>(q.limit, 1, history_page_entries_max);
  HistoryPage page;
  // A wallet's cursor names the last entry returned; below the window it is
  // on disk only.  (An org-wide cursor below the window leaves the ledger
  // nothing to examine, and it says so with `truncated`.)
  const bool cursor_on_disk = !q.all_wallets && q.cursor != 0 && q.cursor < window_first;
  if (!cursor_on_disk) {
    absl::StatusOr<HistoryPage> in_ram = ledger.GetHistory(q);
    if (!in_ram.ok()) return in_ram;
    page = std::move(*in_ram);
    if (!page.truncated || page.entries.size() >= limit) return page;
  } else if (absl::Status s = ledger.GetSettings(q.org_id).status(); !s.ok()) {
    return s;  // unknown_org, as from the ledger
  }
  page.truncated = false;
  page.next_cursor = 0;

  auto push = [&](uint64_t seq) -> absl::Status {
    absl::StatusOr<HistoryRecord> full = Read(seq, true);
    if (!full.ok()) return full.status();
    page.entries.push_back(std::move(full->view));
    return absl::OkStatus();
  };

  if (!q.all_wallets) {
    uint64_t next = 0;
    if (!page.entries.empty() || q.cursor != 0) {
      uint64_t last = page.entries.empty() ? q.cursor : page.entries.back().seq;
      absl::StatusOr<HistoryRecord> r = Read(last, false);
      if (!r.ok()) {
        page.truncated = true;
        return page;
      }
      if (r->org_id != q.org_id || r->view.wallet_id != q.wallet_id) {
        return absl::InvalidArgumentError("cursor does not belong to this wallet's history");
      }
      next = r->prev_seq;
    } else {
      absl::StatusOr<uint64_t> head = ledger.HistoryHead(q.org_id, q.wallet_id);
      if (!head.ok()) return head.status();
      next = *head;
    }
    while (next != 0) {
      absl::StatusOr<HistoryRecord> r = Read(next, false);
      if (!r.ok()) {
        page.truncated = true;  // a damaged or lost entry ends the walk
        return page;
      }
      if (q.from_us != 0 && r->view.time_us < q.from_us / 1000 * 1000) return page;
      if (Matches(r->view, q)) {
        if (page.entries.size() == limit) {
          page.next_cursor = page.entries.back().seq;
          return page;
        }
        if (absl::Status s = push(next); !s.ok()) {
          page.truncated = true;
          return page;
        }
      }
      next = r->prev_seq;
    }
    return page;
  }

  // The whole org: scan downward below what the ledger examined.
  uint64_t upper = window_first;  // exclusive
  if (q.cursor != 0) upper = std::min(upper, q.cursor);
  if (!page.entries.empty()) upper = std::min(upper, page.entries.back().seq);
  upper = std::min(upper, entries_ + 1);
  // Entries are in time order: skip those at or after to_us by bisection.
  if (q.to_us != 0 && upper > 1) {
    uint64_t lo = 1, hi = upper;  // find the first seq in [lo, hi) with time >= to_us
    while (lo < hi) {
      uint64_t mid = lo + (hi - lo) / 2;
      absl::StatusOr<HistoryRecord> r = Read(mid, false);
      if (!r.ok()) break;  // damage: fall back to a plain scan
      if (r->view.time_us >= q.to_us) {
        hi = mid;
      } else {
        lo = mid + 1;
      }
    }
    if (lo == hi) upper = lo;
  }
  std::string chunk;
  uint64_t scanned = 0;
  uint64_t seq = upper;  // examine seq - 1 next
  while (seq > 1) {
    if (scanned >= history_scan_entries_max) {
      page.next_cursor = seq;  // continue below seq
      return page;
    }
    uint64_t n = std::min<uint64_t>(seq - 1, 1024);
    uint64_t first = seq - n;
    chunk.resize(n * history_record_bytes);
    absl::StatusOr<size_t> got =
        entries_file_->PRead((first - 1) * history_record_bytes,
                             std::as_writable_bytes(std::span(chunk.data(), chunk.size())));
    if (!got.ok()) return got.status();
    if (*got != chunk.size()) {
      page.truncated = true;
      return page;
    }
    for (uint64_t s = seq - 1; s >= first; --s) {
      ++scanned;
      bool has_text = false;
      uint64_t texts_end = 0;
      absl::StatusOr<HistoryRecord> r = DecodeEntry(
          std::string_view(chunk).substr((s - first) * history_record_bytes, history_record_bytes),
          s, &has_text, &texts_end);
      if (!r.ok()) {
        page.truncated = true;
        continue;
      }
      if (q.from_us != 0 && r->view.time_us < q.from_us / 1000 * 1000) return page;
      if (r->org_id != q.org_id || !Matches(r->view, q)) continue;
      if (page.entries.size() == limit) {
        page.next_cursor = page.entries.back().seq;
        return page;
      }
      if (has_text) {
        if (absl::Status st = push(s); !st.ok()) page.truncated = true;
      } else {
        page.entries.push_back(std::move(r->view));
      }
    }
    seq = first;
  }
  return page;
}

absl::StatusOr<int64_t> HistoryFile::BalanceAt(const Ledger& ledger, uint64_t org_id,
                                               uint64_t wallet_id, Asset asset,
                                               int64_t at_us) const {
  absl::StatusOr<int64_t> in_ram = ledger.BalanceAt(org_id, wallet_id, asset, at_us);
  if (in_ram.ok() || in_ram.status().code() != absl::StatusCode::kOutOfRange) return in_ram;
  absl::StatusOr<uint64_t> head = ledger.HistoryHead(org_id, wallet_id);
  if (!head.ok()) return head.status();
  for (uint64_t next = *head; next != 0;) {
    absl::StatusOr<HistoryRecord> r = Read(next, false);
    if (!r.ok()) return absl::OutOfRangeError("history entry lost: " + std::string(r.status().message()));
    if (r->view.time_us <= at_us && r->view.asset == asset) return r->view.balance_after;
    next = r->prev_seq;
  }
  return 0;
}

}  // namespace tally::wal
