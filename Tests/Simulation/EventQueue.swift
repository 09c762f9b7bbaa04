import Time

/// The simulation's agenda: items by due time, ties in the order they were pushed (a binary heap
/// keyed by time and push order, so that a run is the same on every machine).
struct EventQueue<Item> {
    private struct Entry {
        var time: Nanoseconds
        var order: UInt64
        var item: Item
    }

    private var heap: [Entry] = []
    private var pushed: UInt64 = 0

    var count: Int { heap.count }

    /// When the next item is due.
    var nextTime: Nanoseconds? { heap.first?.time }

    mutating func push(_ item: Item, at time: Nanoseconds) {
        heap.append(Entry(time: time, order: pushed, item: item))
        pushed += 1
        var child = heap.count - 1
        while child > 0, earlier(child, than: (child - 1) / 2) {
            heap.swapAt(child, (child - 1) / 2)
            child = (child - 1) / 2
        }
    }

    /// Removes and returns the next item; the queue must not be empty.
    mutating func pop() -> Item {
        let first = heap[0].item
        let last = heap.removeLast()
        guard !heap.isEmpty else { return first }
        heap[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1
            var least = parent
            if left < heap.count, earlier(left, than: least) { least = left }
            if left + 1 < heap.count, earlier(left + 1, than: least) { least = left + 1 }
            guard least != parent else { return first }
            heap.swapAt(parent, least)
            parent = least
        }
    }

    private func earlier(_ a: Int, than b: Int) -> Bool {
        heap[a].time < heap[b].time || heap[a].time == heap[b].time && heap[a].order < heap[b].order
    }
}
