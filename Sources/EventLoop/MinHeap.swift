/// A binary min-heap in an array: insert and remove the least element in O(log n), read it in
/// O(1). The scheduler's timers live in one; it is all of a priority queue the loop needs.
@usableFromInline
struct MinHeap<Element: Comparable> {
    @usableFromInline var elements: [Element] = []

    @inlinable
    init() {}

    @inlinable
    var count: Int { elements.count }

    /// The least element, if any.
    @inlinable
    var min: Element? { elements.first }

    @inlinable
    mutating func insert(_ element: Element) {
        elements.append(element)
        var child = elements.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard elements[child] < elements[parent] else { break }
            elements.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the least element; the heap must not be empty.
    @inlinable
    mutating func removeMin() -> Element {
        let least = elements[0]
        let last = elements.removeLast()
        guard !elements.isEmpty else { return least }
        elements[0] = last
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < elements.count, elements[left] < elements[smallest] { smallest = left }
            if right < elements.count, elements[right] < elements[smallest] { smallest = right }
            guard smallest != parent else { return least }
            elements.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
